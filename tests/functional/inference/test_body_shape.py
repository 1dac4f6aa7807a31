"""A body is refused by its outer shape before its values are validated one by one.

Each wrong value used to cost one validation error object: a 6 MiB body of three million
numbers where rows belong took tens of seconds to refuse. These tests pin the cheap path: the
refusal comes before Powertools' body validation (a spy fails the test if it is reached), or
that validation collects a bounded number of errors. How long the worst bodies take is measured
by ``bench/bench_worst_bodies.py``, not here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.middlewares import openapi_validation
from sklearn.datasets import load_digits

from tests.events import load_event
from truthwatch import serving

ROW = load_digits().data[0].astype(int).tolist()


def _event(body: Any, path: str = "/predict") -> dict[str, Any]:
    event = load_event("apigw-rest-predict")
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    event["body"] = json.dumps(body)
    return event


@pytest.fixture
def validation_unreached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Powertools validates the body value by value."""

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the body reached value-by-value validation")

    monkeypatch.setattr(openapi_validation, "_request_body_to_args", reached)


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many validation error entries reach the handler's 400, per refusal."""
    counts: list[int] = []
    original = serving.validation_error

    def counting(errors: Any) -> serving.RequestError:
        counts.append(len(errors))
        return original(errors)

    monkeypatch.setattr(serving, "validation_error", counting)
    return counts


@pytest.mark.parametrize(
    ("path", "body", "rows", "limit"),
    [
        ("/predict", {"instances": [0] * 1025}, 1025, 1024),
        ("/predict", {"inputs": [0] * 5000}, 5000, 1024),
        ("/predict", {"inputs": {"pixels": ["x"] * 1025}}, 1025, 1024),
        ("/explain", {"instances": [0] * 64}, 64, 8),
        ("/explain", {"instances": [ROW] * 9}, 9, 8),
    ],
    ids=["flat_instances", "flat_inputs", "named_strings", "explain_flat_row", "explain_nine_rows"],
)
def test_more_rows_than_the_limit_are_413_before_any_value_is_validated(
    invoke, validation_unreached, path, body, rows, limit
):
    status, payload, _ = invoke(_event(body, path))

    assert (status, payload["error"]["code"]) == (413, "too_many_rows")
    assert payload["error"]["details"] == [{"rows": rows, "limit": limit}]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"instances": ROW}, "instances"),
        ({"inputs": ROW}, "inputs"),
        ({"inputs": {"pixels": ROW}}, "inputs.pixels"),
    ],
)
def test_a_flat_list_where_rows_belong_is_one_400_naming_the_shape(invoke, validation_unreached, body, where):
    status, payload, _ = invoke(_event(body))

    assert (status, payload["error"]["code"]) == (400, "wrong_shape")
    assert payload["error"]["message"].startswith(f"`{where}` must be a list of rows")
    assert "shape (n, 64)" in payload["error"]["message"]
    assert "shape (64,)" in payload["error"]["message"]
    assert payload["error"]["details"] == [{"expected": "(n, 64)", "received": "(64,)"}]


def test_rows_that_are_not_all_lists_are_named_by_position_and_json_type(invoke, validation_unreached):
    status, payload, _ = invoke(_event({"instances": [ROW, "row", None, {"a": 1}, ROW]}))

    assert (status, payload["error"]["code"]) == (400, "wrong_shape")
    assert "item 1 is a string (and 2 more items that are not lists)" in payload["error"]["message"]
    assert payload["error"]["details"] == [
        {"row": 1, "received": "string"},
        {"row": 2, "received": "null"},
        {"row": 3, "received": "object"},
    ]


def test_a_batch_of_wrong_values_collects_ten_errors_and_counts_the_rest(invoke, collected):
    status, payload, _ = invoke(_event({"instances": [["x"] * 64] * 1024}))

    assert (status, payload["error"]["code"]) == (400, "invalid_body")
    assert collected == [serving.MAX_DETAILS + 1]
    assert payload["error"]["message"] == (
        f"body.instances.0.0: Input should be a valid number (and {1024 * 64 - 1} more)"
    )
    assert [d["location"] for d in payload["error"]["details"]] == [
        f"body.instances.0.{j}" for j in range(10)
    ]


def test_wrong_values_under_a_named_input_are_bounded_too(invoke, collected):
    status, payload, _ = invoke(_event({"inputs": {"pixels": [[None] * 64] * 100}}))

    assert (status, payload["error"]["code"]) == (400, "invalid_body")
    assert collected == [serving.MAX_DETAILS + 1]
    assert payload["error"]["message"].endswith(f"(and {100 * 64 - 1} more)")
    assert payload["error"]["details"][0]["location"] == "body.inputs.pixels.0.0"


def test_unknown_fields_are_refused_before_validation_listing_ten_and_counting_all(
    invoke, validation_unreached
):
    body: dict[str, Any] = {"instances": [ROW], **{f"field_{i}": i for i in range(1000)}}

    status, payload, _ = invoke(_event(body))

    assert (status, payload["error"]["code"]) == (400, "invalid_body")
    assert payload["error"]["message"] == "body.field_0: Extra inputs are not permitted (and 999 more)"
    assert [d["location"] for d in payload["error"]["details"]] == [f"body.field_{i}" for i in range(10)]


def test_more_inference_ids_than_the_row_limit_are_refused_before_validation(invoke, validation_unreached):
    status, payload, _ = invoke(_event({"instances": [ROW], "inference_ids": [0] * 5000}))

    assert (status, payload["error"]["code"]) == (400, "invalid_inference_ids")
    assert payload["error"]["message"] == (
        "inference_ids: 5000 inference ids for at most 1024 rows (MAX_BATCH_ROWS); send one per row"
    )


def test_named_inputs_other_than_one_are_refused_before_validation(invoke, validation_unreached):
    status, payload, _ = invoke(_event({"inputs": {f"name_{i}": [["x"] * 64] for i in range(3)}}))

    assert (status, payload["error"]["code"]) == (400, "invalid_inputs")
    assert payload["error"]["message"] == "the model has one input; `inputs` names 3"
