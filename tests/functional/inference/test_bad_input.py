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


@pytest.mark.parametrize(
    ("body", "fault"),
    [('{"instances": [[1, 2', "unexpected end of data"), ('\ufeff{"instances": [[1]]}', "byte order mark")],
    ids=["truncated", "bom"],
)
def test_invalid_json_names_its_own_fault_not_nan(invoke, body, fault):
    status, payload, _ = invoke(_event("rest", body, {"content-type": "application/json"}))

    assert (status, payload["error"]["code"]) == (400, "invalid_json")
    assert fault in payload["error"]["message"]
    assert "NaN" not in payload["error"]["message"]


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


ACCEPTED_MEDIA_TYPES = ["application/json", "application/*+json"]
REFUSED_MEDIA_TYPES = [
    "text/plain",
    ";",
    "; charset=utf-8",
    ";;;",
    "",
    "application/xjson",
    "application/jsonx",
    "application/+json",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]
"""Media types a body route answers with 415, whatever the body (also sent by the fuzz test)."""


@pytest.mark.parametrize("shape", ["rest", "http"])
@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize("content_type", REFUSED_MEDIA_TYPES)
def test_a_media_type_other_than_json_is_415_naming_the_received_and_the_accepted(
    invoke, aws, shape, path, content_type
):
    event = _event(shape, json.dumps({"instances": [ROW]}), {"Content-Type": content_type})
    event["path" if shape == "rest" else "rawPath"] = path

    status, payload, _ = invoke(event)

    assert (status, payload["error"]["code"]) == (415, "unsupported_media_type")
    assert payload["error"]["details"] == [{"received": content_type, "accepted": ACCEPTED_MEDIA_TYPES}]
    assert repr(content_type) in payload["error"]["message"]
    assert "application/*+json" in payload["error"]["message"]
    assert items(aws["dynamodb"]) == {}


@pytest.mark.parametrize("shape", ["rest", "http"])
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "Application/Problem+JSON ; q=1",
        "  application/json  ",
    ],
)
def test_json_and_structured_json_media_types_in_any_casing_are_served(invoke, shape, content_type):
    status, body, _ = invoke(_event(shape, json.dumps({"instances": [ROW]}), {"Content-Type": content_type}))

    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["0"]


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_a_form_encoded_json_body_is_415_and_the_answer_quotes_none_of_it(invoke, shape):
    # What `curl -d @rows.json` sends: a JSON body labelled as a form.
    body = json.dumps({"instances": [[7.654321] * 64] * 620})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    status, payload, response = invoke(_event(shape, body, headers))

    assert len(body) > 390_000
    assert (status, payload["error"]["code"]) == (415, "unsupported_media_type")
    assert len(response["body"]) < 512
    assert "7.654321" not in response["body"] and "instances" not in response["body"]


SECRET = "s3cr3t"
ECHO_CASES = [
    ("long_unknown_field", {"instances": [ROW], SECRET * 100: 1}),
    ("named_inputs_of_strings", {"inputs": {SECRET * 10: [[SECRET] * 64] * 30}}),
    ("many_strings", {"instances": [[SECRET] * 64] * 100}),
    ("malformed_id", {"instances": [ROW], "inference_ids": [SECRET + " " + SECRET * 50]}),
    ("ids_of_the_wrong_type", {"instances": [ROW], "inference_ids": {SECRET: SECRET}}),
]


@pytest.mark.parametrize("shape", ["rest", "http"])
@pytest.mark.parametrize("body", [c[1] for c in ECHO_CASES], ids=[c[0] for c in ECHO_CASES])
def test_errors_quote_locations_and_types_never_values_and_stay_small(invoke, shape, body):
    status, payload, response = invoke(_event(shape, json.dumps(body), {"content-type": "application/json"}))

    assert (status, payload["error"]["code"]) == (400, "invalid_body")
    assert SECRET not in response["body"]
    assert len(response["body"]) < 2048
    assert all({"location", "problem", "type"} == set(d) for d in payload["error"]["details"])


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"inputs": [["x", *ROW[1:]]]}, "body.inputs.0.0"),
        ({"inputs": {"pixels": [[*ROW[:-1], None]]}}, "body.inputs.pixels.0.63"),
        ({"inputs": {"pixels": [ROW, [True, *ROW[1:]]]}}, "body.inputs.pixels.1.0"),
        ({"inputs": 5}, "body.inputs"),
    ],
    ids=["rows", "named_rows", "second_named_row", "neither"],
)
def test_inputs_errors_name_positions_and_fields_of_the_form_the_json_type_says(invoke, body, location):
    status, payload, _ = invoke(_event("rest", json.dumps(body), {"content-type": "application/json"}))

    assert (status, payload["error"]["code"]) == (400, "invalid_body")
    assert [d["location"] for d in payload["error"]["details"]] == [location]
    assert payload["error"]["message"].startswith(location + ": ")
    assert "more)" not in payload["error"]["message"]


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_a_long_unknown_path_is_404_without_quoting_it_whole(invoke, shape):
    event = _event(shape, None)
    long_path = "/" + SECRET * 500
    if shape == "rest":
        event["path"] = long_path
    else:
        event["rawPath"] = event["requestContext"]["http"]["path"] = long_path

    status, payload, response = invoke(event)

    assert (status, payload["error"]["code"]) == (404, "not_found")
    assert len(response["body"]) < 512


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


def _gzip_event(raw: bytes) -> dict[str, Any]:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    event = _event("rest", base64.b64encode(raw).decode(), headers)
    event["isBase64Encoded"] = True
    return event


def test_a_body_of_two_gzip_members_is_read_whole(invoke):
    text = json.dumps({"instances": [ROW]}).encode()

    status, payload, _ = invoke(_gzip_event(gzip.compress(text[:20]) + gzip.compress(text[20:])))

    assert (status, [p["label"] for p in payload["predictions"]]) == (200, ["0"])


def test_bytes_after_the_gzip_body_that_are_not_gzip_are_refused_not_dropped(invoke):
    packed = gzip.compress(json.dumps({"instances": [ROW]}).encode())

    status, payload, _ = invoke(_gzip_event(packed + b"garbage!"))

    assert (status, payload["error"]["code"]) == (400, "invalid_gzip")
    assert "after its gzip member 1" in payload["error"]["message"]


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


@pytest.mark.parametrize("shape", ["rest", "http"])
@pytest.mark.parametrize("path", ["/predict/", "/predict//"])
def test_a_trailing_slash_is_served_as_the_path_without_it_by_both_apis(invoke, shape, path):
    served = _event(shape, json.dumps({"instances": [ROW]}), {"content-type": "application/json"})
    wrong = _event(shape, None)
    if shape == "rest":
        served["path"] = wrong["path"] = path
        wrong["httpMethod"] = "GET"
    else:
        served["rawPath"] = wrong["rawPath"] = path
        wrong["requestContext"]["http"]["method"] = "GET"

    status, body, _ = invoke(served)
    wrong_status, wrong_body, _ = invoke(wrong)

    assert (status, [p["label"] for p in body["predictions"]]) == (200, ["0"])
    assert (wrong_status, wrong_body["error"]["code"]) == (405, "method_not_allowed")
    assert wrong_body["error"]["message"] == f"GET is not allowed on {path}; use POST"


def test_refusals_are_counted(invoke, capsys):
    invoke(_event("rest", "not json"))

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert [doc["client_errors"] for doc in lines if "client_errors" in doc] == [[1.0]]
