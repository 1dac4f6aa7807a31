"""Every bad request gets its 4xx and a JSON error body, through both event shapes."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from sklearn.datasets import load_digits

from tests.events import load_event
from tests.functional.inference.conftest import items

ROW = load_digits().data[0].astype(int).tolist()


def _event(shape: str, body: str | None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    if shape == "rest":
        event = load_event("apigw-rest-predict")
        event["multiValueHeaders"] = None
    else:
        event = load_event("apigw-http-predict")
    event["body"] = body
    if headers is not None:
        event["headers"] = headers
    return event


CASES = [
    ("not_json", "{instances: [[1]]}", 400, "invalid_json"),
    ("nan_token", '{"instances": [[NaN]]}', 400, "invalid_json"),
    ("infinity_token", '{"instances": [[Infinity]]}', 400, "invalid_json"),
    ("string_value", json.dumps({"instances": [["1", *ROW[1:]]]}), 400, "invalid_body"),
    ("boolean_value", json.dumps({"instances": [[True, *ROW[1:]]]}), 400, "invalid_body"),
    ("null_value", json.dumps({"instances": [[None, *ROW[1:]]]}), 400, "invalid_body"),
    ("ragged_rows", json.dumps({"instances": [ROW, ROW[:10]]}), 400, "ragged_rows"),
    ("short_rows", json.dumps({"instances": [ROW[:8]]}), 400, "wrong_row_length"),
    ("empty_instances", json.dumps({"instances": []}), 400, "empty_batch"),
    ("both_forms", json.dumps({"instances": [ROW], "inputs": [ROW]}), 400, "ambiguous_body"),
    ("neither_form", json.dumps({"rows": [ROW]}), 400, "invalid_body"),
    ("empty_body", "", 400, "invalid_body"),
    ("json_array", json.dumps([ROW]), 400, "invalid_body"),
    ("beyond_float32", json.dumps({"instances": [[1e39, *ROW[1:]]]}), 400, "value_out_of_range"),
    (
        "duplicate_ids",
        json.dumps({"instances": [ROW, ROW], "inference_ids": ["a", "a"]}),
        400,
        "invalid_inference_ids",
    ),
    (
        "too_few_ids",
        json.dumps({"instances": [ROW, ROW], "inference_ids": ["a"]}),
        400,
        "invalid_inference_ids",
    ),
    ("unsafe_id", json.dumps({"instances": [ROW], "inference_ids": ["a b"]}), 400, "invalid_body"),
    ("long_id", json.dumps({"instances": [ROW], "inference_ids": ["x" * 129]}), 400, "invalid_body"),
    ("too_many_rows", json.dumps({"instances": [ROW] * 1025}), 413, "too_many_rows"),
]


@pytest.mark.parametrize("shape", ["rest", "http"])
@pytest.mark.parametrize(("body", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_body_gets_its_status_and_error_code(invoke, aws, shape, body, status, code):
    answered, payload, _ = invoke(_event(shape, body, {"content-type": "application/json"}))

    assert (answered, payload["error"]["code"]) == (status, code)
    assert payload["error"]["message"]
    assert isinstance(payload["error"]["details"], list)
    assert items(aws["dynamodb"]) == {}


def test_wrong_row_length_message_gives_the_expected_shape(invoke):
    _, payload, _ = invoke(_event("rest", json.dumps({"instances": [ROW[:8]]})))

    assert "(n, 64)" in payload["error"]["message"]
    assert payload["error"]["details"] == [{"row": 0, "length": 8}]


def test_validation_errors_do_not_echo_the_input(invoke):
    _, payload, _ = invoke(_event("rest", json.dumps({"instances": [["secret-value", *ROW[1:]]]})))

    assert "secret-value" not in json.dumps(payload)
    assert payload["error"]["details"][0]["location"] == "body.instances.0.0"


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_wrong_media_type_is_415(invoke, shape):
    status, payload, _ = invoke(_event(shape, "a,b\n1,2\n", {"Content-Type": "text/csv"}))

    assert (status, payload["error"]["code"]) == (415, "unsupported_media_type")


def test_unknown_content_encoding_is_415(invoke):
    headers = {"content-type": "application/json", "content-encoding": "br"}
    status, payload, _ = invoke(_event("http", json.dumps({"instances": [ROW]}), headers))

    assert (status, payload["error"]["code"]) == (415, "unsupported_content_encoding")


def test_body_over_the_size_limit_is_413(invoke, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")

    status, payload, _ = invoke(_event("rest", json.dumps({"instances": [ROW] * 10})))

    assert (status, payload["error"]["code"]) == (413, "body_too_large")


def test_gzip_bomb_is_413_without_inflating_it(invoke):
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]", compresslevel=9)
    event = _event(
        "http",
        base64.b64encode(bomb).decode(),
        {"content-type": "application/json", "content-encoding": "gzip"},
    )
    event["isBase64Encoded"] = True

    status, payload, _ = invoke(event)

    assert len(bomb) < 100_000
    assert (status, payload["error"]["code"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    ("body", "code"),
    [("%%%not-base64", "invalid_base64"), (base64.b64encode(b"not gzip").decode(), "invalid_gzip")],
)
def test_undecodable_bodies_are_400(invoke, body, code):
    event = _event("rest", body, {"content-type": "application/json", "content-encoding": "gzip"})
    event["isBase64Encoded"] = True

    status, payload, _ = invoke(event)

    assert (status, payload["error"]["code"]) == (400, code)


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_unknown_route_is_404_and_wrong_method_is_405(invoke, shape):
    missing = _event(shape, None)
    wrong = _event(shape, None)
    if shape == "rest":
        missing["path"] = "/predictions"
        wrong["httpMethod"] = "GET"
    else:
        missing["rawPath"] = missing["requestContext"]["http"]["path"] = "/predictions"
        wrong["requestContext"]["http"]["method"] = "GET"

    missing_status, missing_body, _ = invoke(missing)
    wrong_status, wrong_body, response = invoke(wrong)

    assert (missing_status, missing_body["error"]["code"]) == (404, "not_found")
    assert (wrong_status, wrong_body["error"]["code"]) == (405, "method_not_allowed")
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert headers["Allow"] == "POST"


def test_refusals_are_counted(invoke, capsys):
    invoke(_event("rest", "not json"))

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert [doc["client_errors"] for doc in lines if "client_errors" in doc] == [[1.0]]
