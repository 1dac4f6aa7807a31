"""HTTP requests become API Gateway proxy events; proxy results become HTTP answers."""

from __future__ import annotations

import base64
import gzip
import io
from email.message import Message

import pytest

from infra.local.gateway import MalformedRequestError, Route, build_event, parse_response, read_body


def test_route_matches_method_and_path_parameters() -> None:
    assert Route("/predict", "POST").match("POST", "/predict") == {}
    assert Route("/predict", "POST").match("GET", "/predict") is None
    assert Route("/models/{name}", "ANY").match("GET", "/models/digits") == {"name": "digits"}
    assert Route("/{proxy+}", "ANY").match("GET", "/a/b") == {"proxy": "a/b"}


def test_event_carries_text_body_headers_and_query() -> None:
    event = build_event(
        "POST",
        "/predict?debug=1&debug=2",
        [("Content-Type", "application/json"), ("X-Trace", "a")],
        b'{"instances": [[1]]}',
        route=Route("/predict", "POST"),
        path_parameters={},
        stage="dev",
    )

    assert event["body"] == '{"instances": [[1]]}'
    assert event["isBase64Encoded"] is False
    assert event["headers"]["X-Trace"] == "a"
    assert event["multiValueQueryStringParameters"] == {"debug": ["1", "2"]}
    assert event["requestContext"]["stage"] == "dev"
    assert event["requestContext"]["path"] == "/dev/predict"


def test_encoded_body_is_sent_base64() -> None:
    packed = gzip.compress(b'{"instances": []}')
    event = build_event(
        "POST",
        "/predict",
        [("Content-Encoding", "gzip")],
        packed,
        route=Route("/predict", "POST"),
        path_parameters={},
        stage="dev",
    )

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == packed


def test_proxy_result_becomes_the_answer_and_a_malformed_one_a_502() -> None:
    answer = parse_response({"statusCode": 201, "headers": {"X-A": "1"}, "body": "hi"})
    assert (answer.status, answer.headers, answer.body) == (201, [("X-A", "1")], b"hi")

    assert parse_response({"body": "no status"}).status == 502
    assert parse_response(None).status == 502


@pytest.mark.parametrize("path", ["/predict/", "/predict//"])
def test_a_trailing_slash_reaches_the_resource_without_it(path: str) -> None:
    assert Route("/predict", "POST").match("POST", path) == {}
    assert Route("/{proxy+}", "ANY").match("GET", "/a/b/") == {"proxy": "a/b"}
    assert Route("/predict", "POST").match("POST", "/predict/x") is None


def _headers(*pairs: tuple[str, str]) -> Message:
    headers = Message()
    for name, value in pairs:
        headers[name] = value
    return headers


def test_a_chunked_body_is_read_whole_with_extensions_and_trailers_dropped() -> None:
    wire = b'5;name=value\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\nNEXT'
    stream = io.BytesIO(wire)

    body = read_body(_headers(("Transfer-Encoding", "chunked"), ("Content-Length", "99")), stream)

    assert body == b'{"a": 1}'
    assert stream.read() == b"NEXT"


def test_a_content_length_body_is_read_to_its_length() -> None:
    assert read_body(_headers(("Content-Length", " 3 ")), io.BytesIO(b"abcdef")) == b"abc"
    assert read_body(_headers(), io.BytesIO(b"abc")) == b""


@pytest.mark.parametrize(
    ("headers", "wire", "status"),
    [
        ((("Content-Length", "abc"),), b"{}", 400),
        ((("Content-Length", "-1"),), b"{}", 400),
        ((("Content-Length", "1e3"),), b"{}", 400),
        ((("Content-Length", "2"), ("Content-Length", "3")), b"{}", 400),
        ((("Content-Length", "10"),), b"{}", 400),
        ((("Content-Length", "11"),), b"{}", 413),
        ((("Transfer-Encoding", "chunked"),), b"zz\r\n{}\r\n0\r\n\r\n", 400),
        ((("Transfer-Encoding", "chunked"),), b"2\r\n{}", 400),
        ((("Transfer-Encoding", "chunked"),), b"5\r\n{}\r\n", 400),
        ((("Transfer-Encoding", "chunked"),), b"6\r\n{}{}{}\r\n6\r\n{}{}{}\r\n0\r\n\r\n", 413),
        ((("Transfer-Encoding", "gzip, chunked"),), b"", 501),
    ],
    ids=[
        "length_not_a_number",
        "length_negative",
        "length_not_an_integer",
        "two_lengths",
        "body_shorter_than_its_length",
        "length_over_the_limit",
        "chunk_size_not_hex",
        "chunked_body_cut_short",
        "chunk_shorter_than_its_size",
        "chunks_over_the_limit",
        "other_transfer_coding",
    ],
)
def test_a_malformed_body_is_refused_with_api_gateways_status(
    headers: tuple[tuple[str, str], ...], wire: bytes, status: int
) -> None:
    with pytest.raises(MalformedRequestError) as caught:
        read_body(_headers(*headers), io.BytesIO(wire), limit=10)

    assert caught.value.status == status
