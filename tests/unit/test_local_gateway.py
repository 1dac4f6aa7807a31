"""HTTP requests become API Gateway proxy events; proxy results become HTTP answers."""

from __future__ import annotations

import base64
import gzip
import io
import json
import socket
import struct
import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from infra.local.gateway import (
    LocalGateway,
    MalformedRequestError,
    Route,
    build_event,
    parse_response,
    read_body,
)


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


@pytest.fixture
def served() -> Iterator[LocalGateway]:
    """A gateway on a free port whose function answers 200 with the event's path."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {}, "body": json.dumps({"path": event["path"]})}

    gateway = LocalGateway("127.0.0.1", 0, [Route("/predict", "POST")], invoke, read_timeout_s=0.5)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _exchange(gateway: LocalGateway, wire: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as client:
        client.sendall(wire)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"POST /predict HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /predict HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
        (b"POST /" + b"p" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"BREW /predict HTTP/1.1\r\n\r\n", 501),
    ],
    ids=["long_header", "too_many_headers", "long_request_line", "unknown_method"],
)
def test_what_http_server_cannot_parse_gets_a_json_message_not_an_html_page(
    served: LocalGateway, wire: bytes, status: int
) -> None:
    answer = _exchange(served, wire)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert set(json.loads(body)) == {"message"}


def test_a_client_that_leaves_costs_no_traceback_and_the_next_request_is_served(
    served: LocalGateway, capfd: pytest.CaptureFixture[str]
) -> None:
    # Leaves before its answer is written: mid-body, and with a whole request it never reads.
    for wire in (
        b'POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"inst',
        b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    ):
        with socket.create_connection(("127.0.0.1", served.port)) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset on close
            client.sendall(wire)
    time.sleep(1.0)  # past the read timeout of the one that stopped mid-body

    answer = _exchange(served, b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert "Traceback" not in capfd.readouterr().err


def test_a_connection_that_stops_sending_is_closed_after_the_read_timeout(served: LocalGateway) -> None:
    started = time.monotonic()

    answer = _exchange(served, b'POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"inst')

    assert answer == b""  # closed without an answer: nobody is left to read one
    assert 0.4 < time.monotonic() - started < 4
