import base64
import gzip
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from truthwatch.serving import (
    _FIELDS,
    MAX_DETAILS,
    MORE_PROBLEMS,
    ErrorCode,
    ModelOutputError,
    PredictRequest,
    RequestError,
    ServingSettings,
    _check_rows,
    check_body_shape,
    check_media_type,
    check_model_output,
    decode_body,
    is_json_media_type,
    parse_json,
    unmatched_route,
    validation_error,
)


def test_settings_defaults_and_overrides():
    assert ServingSettings.from_env({}) == ServingSettings()
    settings = ServingSettings.from_env(
        {"CAPTURE_INPUTS": "RAW", "MAX_BATCH_ROWS": "10", "MODEL_BACKEND": "tensorflow"}
    )
    assert (settings.capture_mode, settings.max_batch_rows, settings.backend) == ("raw", 10, "tensorflow")


def test_variant_and_explain_limit_settings():
    settings = ServingSettings.from_env({"MODEL_VARIANT": " Dynamic_Range ", "MAX_EXPLAIN_ROWS": "3"})

    assert (settings.variant, settings.max_explain_rows) == ("dynamic_range", 3)
    assert (ServingSettings().variant, ServingSettings().max_explain_rows) == ("float32", 8)


def test_a_quantized_variant_needs_the_litert_back_end():
    with pytest.raises(ValueError, match="MODEL_VARIANT 'full_integer' needs MODEL_BACKEND litert"):
        ServingSettings.from_env({"MODEL_BACKEND": "tensorflow", "MODEL_VARIANT": "full_integer"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BATCH_ROWS", "0"),
        ("CAPTURE_TTL_DAYS", "x"),
        ("MODEL_BACKEND", "onnx"),
        ("MODEL_VARIANT", "int4"),
        ("MAX_EXPLAIN_ROWS", "-1"),
    ],
)
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        ServingSettings.from_env({name: value})


def test_gzip_and_base64_are_undone():
    text = json.dumps({"instances": [[1, 2]]})
    body = base64.b64encode(gzip.compress(text.encode())).decode()

    assert decode_body(body, True, "GZIP", 1000) == text
    assert decode_body(text, False, None, 1000) == text


def test_decoded_size_is_bounded():
    bomb = base64.b64encode(gzip.compress(b"0" * 100_000)).decode()

    with pytest.raises(RequestError) as caught:
        decode_body(bomb, True, "gzip", 1000)

    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _gunzipped(raw: bytes, max_bytes: int = 1000) -> str:
    return decode_body(base64.b64encode(raw).decode(), True, "gzip", max_bytes)


def test_every_gzip_member_is_read_and_zero_padding_between_them_skipped():
    first, second = b'{"instances": ', b"[[1, 2]]}"

    assert _gunzipped(gzip.compress(first) + gzip.compress(second)) == (first + second).decode()
    assert (
        _gunzipped(gzip.compress(first) + b"\0\0" + gzip.compress(second) + b"\0")
        == (first + second).decode()
    )


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"garbage!", "the bytes after its gzip member 1 (from byte 40) are not another gzip member"),
        (gzip.compress(b"[]")[:-4], "gzip body is truncated: its member 2 does not end"),
    ],
    ids=["not_gzip", "truncated_member"],
)
def test_bytes_after_a_gzip_member_are_a_member_or_the_body_is_refused(tail, reason):
    with pytest.raises(RequestError) as caught:
        _gunzipped(gzip.compress(b'{"instances": [[1]]}', mtime=0) + tail)

    assert (caught.value.status, caught.value.code) == (HTTPStatus.BAD_REQUEST, "invalid_gzip")
    assert reason in caught.value.message


def test_the_decoded_limit_counts_every_member():
    half = gzip.compress(b" " * 500)

    assert len(_gunzipped(half + half)) == 1000
    with pytest.raises(RequestError) as caught:
        _gunzipped(half + half + gzip.compress(b" "))

    assert (caught.value.status, caught.value.code) == (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body_too_large")


def test_many_tiny_gzip_members_decode_in_one_pass():
    member = gzip.compress(b"1", compresslevel=0)

    assert _gunzipped(member * 50_000, 100_000) == "1" * 50_000


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_tokens_are_refused(token):
    with pytest.raises(RequestError) as caught:
        parse_json('{"instances": [[' + token + "]]}")

    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"instances": [[1, 2',
            "unexpected end of data at line 1 column 21 (the body ends before its JSON does)",
        ),
        (
            '\ufeff{"instances": []}',
            "byte order mark (BOM) is not supported at line 1 column 1 (send the JSON without",
        ),
        (
            '{"inference_ids": ["\\ud800"]}',
            "no low surrogate in string at line 1 column 21 (a \\ud800-\\udbff escape",
        ),
        (
            '{"instances": ' + "[" * 1100 + "]" * 1100 + "}",
            "depth limit exceeded at line 1 column 1039 (arrays and",
        ),
        ('{"instances": [[1, 2]] x', "expected ',' or '}' at line 1 column 24"),
        ("[nan]", "invalid literal, expected 'null' at line 1 column 2"),
    ],
    ids=["truncated", "bom", "lone_surrogate", "too_deep", "trailing_text", "lowercase_nan"],
)
def test_invalid_json_names_its_fault_and_mentions_nan_only_when_the_body_holds_one(body, message):
    with pytest.raises(RequestError) as caught:
        parse_json(body)

    assert caught.value.code == "invalid_json"
    assert message in caught.value.message
    assert "NaN" not in caught.value.message


@pytest.mark.parametrize(
    "body", ['{"instances": [[NaN]]}', "[-Infinity]", b'{"a": [1, Infinity]}', "[1 NaN]"]
)
def test_a_nan_or_infinity_token_at_the_fault_is_named(body):
    with pytest.raises(RequestError) as caught:
        parse_json(body)

    assert caught.value.message.endswith("(NaN and Infinity are not JSON numbers; send finite numbers)")


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", None, "application/vnd.api+json"]
)
def test_json_media_types_pass(content_type):
    check_media_type(content_type)


def test_other_media_types_are_415():
    with pytest.raises(RequestError) as caught:
        check_media_type("text/plain")

    assert caught.value.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE


@pytest.mark.parametrize(
    "content_type", ["", " ; charset=utf-8", "application/+json", "application / json", "application/json+x"]
)
def test_anything_but_json_or_a_json_suffix_is_415_naming_what_was_received(content_type):
    with pytest.raises(RequestError) as caught:
        check_media_type(content_type)

    assert not is_json_media_type(content_type)
    assert (caught.value.status, caught.value.code) == (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    assert caught.value.details == [
        {"received": content_type, "accepted": ["application/json", "application/*+json"]}
    ]


def test_a_long_content_type_is_quoted_cut_to_64_characters():
    with pytest.raises(RequestError) as caught:
        check_media_type("text/" + "x" * 10_000)

    assert len(caught.value.details[0]["received"]) == 64
    assert len(caught.value.message) < 200


def test_validation_details_name_plain_keys_and_hide_long_or_odd_ones():
    errors = [
        {
            "loc": ("body", "rows"),
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
            "input": 1,
        },
        {"loc": ("body", "k" * 49), "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
        {
            "loc": ("body", "a b", 3),
            "msg": "Input should be a valid number",
            "type": "float_type",
            "input": "v",
        },
    ]

    refused = validation_error(errors)

    assert [d["location"] for d in refused.details] == ["body.rows", "body.<key>", "body.<key>.3"]
    assert refused.message == "body.rows: Extra inputs are not permitted (and 2 more)"


def test_unmatched_route_tells_404_from_405():
    assert unmatched_route("GET", "/nope").status == HTTPStatus.NOT_FOUND
    refused = unmatched_route("DELETE", "/health/")
    assert refused.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert refused.headers == {"Allow": "GET"}


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/predict/"), ("GET", "/health"), ("POST", "/explain//")]
)
def test_an_allowed_method_is_never_told_it_is_not_allowed(method, path):
    refused = unmatched_route(method, path)

    assert (refused.status, refused.code) == (HTTPStatus.NOT_FOUND, "not_found")
    assert "not allowed" not in refused.message


def test_rows_of_json_numbers_pass_the_fast_check_unchanged():
    rows = [[0, 1.5, 16], [2, 3, 4.25]]

    assert _check_rows(rows) is rows


@pytest.mark.parametrize(
    ("rows", "location"),
    [
        ([[1, True]], (0, 1)),
        ([[1, 2], [None, 3]], (1, 0)),
        ([[1, "2"]], (0, 1)),
        ([[1.0], 5], (1,)),
    ],
)
def test_anything_but_numbers_gets_the_strict_error_with_its_location(rows, location):
    with pytest.raises(ValidationError) as caught:
        _check_rows(rows)

    assert caught.value.errors()[0]["loc"] == location


@pytest.mark.parametrize(
    ("inputs", "location", "kind"),
    [
        ([[1, "2"]], ("inputs", 0, 1), "float_type"),
        ({"pixels": [[1, 2], [None]]}, ("inputs", "pixels", 1, 0), "float_type"),
        ({"pixels": [1, 2]}, ("inputs", "pixels", 0), "list_type"),
        ("rows", ("inputs",), "rows_type"),
    ],
)
def test_inputs_are_checked_as_the_form_their_json_type_says(inputs, location, kind):
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate({"inputs": inputs})

    first = caught.value.errors()[0]
    assert (first["loc"], first["type"]) == (location, kind)
    assert all(
        isinstance(part, int) or part in ("inputs", "pixels")
        for e in caught.value.errors()
        for part in e["loc"]
    )


def test_rows_of_wrong_values_list_ten_problems_and_count_the_rest():
    rows = [[1.0, "a", None], [True] * 5, "row", [2.0] * 3] + [["x"] * 100] * 3

    with pytest.raises(ValidationError) as caught:
        _check_rows(rows)

    errors = caught.value.errors()
    assert [e["loc"] for e in errors[:MAX_DETAILS]] == [
        (0, 1),
        (0, 2),
        *[(1, j) for j in range(5)],
        (2,),
        (4, 0),
        (4, 1),
    ]
    assert [e["type"] for e in errors[:MAX_DETAILS]] == ["float_type"] * 7 + ["list_type"] + [
        "float_type"
    ] * 2
    assert (errors[-1]["type"], errors[-1]["ctx"]) == (MORE_PROBLEMS, {"count": 2 + 5 + 1 + 300 - 10})
    assert validation_error(errors).message == (
        f"0.1: Input should be a valid number (and {2 + 5 + 1 + 300 - 1} more)"
    )
    assert len(validation_error(errors).details) == MAX_DETAILS


def test_the_shape_check_knows_exactly_the_request_fields():
    assert set(_FIELDS) == set(PredictRequest.model_fields)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [[1.0] * 64],
        "text",
        {"instances": [[1.0] * 64] * 4},
        {"instances": [[1.0] * 3, ["x"]]},
        {"inputs": {"pixels": [[1.0] * 64]}},
        {"instances": 5, "inputs": "x", "inference_ids": ["a"] * 4},
    ],
)
def test_the_shape_check_leaves_what_validation_reports_in_one_error_to_validation(body):
    check_body_shape(body, 64, max_rows=4)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"instances": [[1.0]] * 5}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_many_rows"),
        ({"inputs": {"x": [1.0] * 5}}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_many_rows"),
        ({"instances": [1.0, 2.0]}, HTTPStatus.BAD_REQUEST, "wrong_shape"),
        ({"inputs": [[1.0], 2.0]}, HTTPStatus.BAD_REQUEST, "wrong_shape"),
        ({"inputs": {}}, HTTPStatus.BAD_REQUEST, "invalid_inputs"),
        ({"inputs": {"a": [], "b": []}}, HTTPStatus.BAD_REQUEST, "invalid_inputs"),
        ({"instances": [[1.0]], "inference_ids": ["a"] * 5}, HTTPStatus.BAD_REQUEST, "invalid_inference_ids"),
        ({"instances": [[1.0]], "rows": 1}, HTTPStatus.BAD_REQUEST, "invalid_body"),
    ],
)
def test_the_shape_check_refuses_by_keys_and_rows(body, status, code):
    with pytest.raises(RequestError) as caught:
        check_body_shape(body, 64, max_rows=4, limit_name="MAX_EXPLAIN_ROWS")

    assert (caught.value.status, caught.value.code) == (status, code)


def test_too_many_rows_names_the_setting_behind_the_limit():
    with pytest.raises(RequestError) as caught:
        check_body_shape({"instances": [0] * 9}, 64, max_rows=8, limit_name="MAX_EXPLAIN_ROWS")

    assert (
        caught.value.message == "9 rows exceed the limit of 8 per request (MAX_EXPLAIN_ROWS); split the batch"
    )


TRAINED_0_TO_16 = SimpleNamespace(input=SimpleNamespace(value_range=(0.0, 16.0)))


def test_a_non_finite_output_is_the_callers_400_when_every_broken_row_is_outside_the_trained_range():
    rows = np.array([[1.0, 2.0], [1e38, 0.0], [3.0, 4.0], [0.0, -5.0]], dtype=np.float32)
    output = np.array([[0.5, 0.5], [np.nan, np.nan], [0.1, 0.9], [np.inf, 0.0]])

    with pytest.raises(RequestError) as caught:
        check_model_output(output, rows, TRAINED_0_TO_16)

    assert (caught.value.status, caught.value.code) == (HTTPStatus.BAD_REQUEST, "value_out_of_range")
    assert caught.value.details == [{"row": 1}, {"row": 3}]
    assert "1e+38" not in caught.value.message and "0..16" in caught.value.message


def test_a_non_finite_output_from_a_row_inside_the_trained_range_is_the_models_fault():
    rows = np.array([[1e38, 0.0], [3.0, 4.0]], dtype=np.float32)
    output = np.full((2, 2), np.nan)

    with pytest.raises(ModelOutputError, match="1 rows within its trained range"):
        check_model_output(output, rows, TRAINED_0_TO_16)


def test_a_finite_output_passes():
    check_model_output(np.ones((1, 2)), np.full((1, 2), 1e30, dtype=np.float32), TRAINED_0_TO_16)


def _documented_codes() -> dict[str, int]:
    """The error table of docs/inference.md: code -> status."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "inference.md").read_text(encoding="utf-8")
    table = text.split("| status | code | when |", 1)[1].split("\n\n", 1)[0]
    rows = (line.split("|") for line in table.splitlines() if re.match(r"\| \d{3} \|", line))
    return {code: int(cells[1]) for cells in rows for code in re.findall(r"`(\w+)`", cells[2])}


def test_the_docs_error_table_lists_every_code_the_handler_can_answer_and_no_other():
    assert sorted(_documented_codes()) == sorted(code.value for code in ErrorCode)


def test_the_docs_error_table_gives_the_status_each_code_is_answered_with():
    documented = _documented_codes()
    refusals = [
        _raised(lambda: parse_json("[NaN]")),
        _raised(lambda: check_media_type("text/plain")),
        _raised(lambda: decode_body("x", False, "br", 10)),
        _raised(lambda: decode_body("%%", True, None, 10)),
        _raised(lambda: decode_body("abcdef", False, None, 3)),
        _raised(lambda: check_body_shape({"instances": [[0]] * 3}, 64, 2)),
        _raised(lambda: check_body_shape({"instances": [0]}, 64, 2)),
        _raised(lambda: check_body_shape({"inputs": {}}, 64, 2)),
        unmatched_route("GET", "/nope"),
        unmatched_route("GET", "/predict"),
    ]

    for refusal in refusals:
        assert int(refusal.status) == documented[refusal.code], refusal.code


def _raised(call: Callable[[], object]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value
