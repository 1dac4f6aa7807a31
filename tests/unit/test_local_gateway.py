"""HTTP requests become API Gateway proxy events; proxy results become HTTP answers."""

from __future__ import annotations

import base64
import gzip

from infra.local.gateway import Route, build_event, parse_response


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
