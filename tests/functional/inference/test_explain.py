"""``POST /explain``: attributions that add up, an 8x8 grid for the digits, limits, nothing recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.events import load_event
from tests.functional.inference.conftest import items
from tests.functional.inference.test_bad_input import CASES
from truthwatch import runtime
from truthwatch.explain import COMPLETENESS_TOLERANCE
from truthwatch.runtime import load_runtime

DIGITS = load_digits()


def _explain(body: object, shape: str = "rest") -> dict:
    if shape == "rest":
        event = load_event("apigw-rest-predict")
        event["path"] = event["requestContext"]["path"] = event["resource"] = "/explain"
    else:
        event = load_event("apigw-http-predict")
        event["rawPath"] = event["requestContext"]["http"]["path"] = "/explain"
        event["routeKey"] = "POST /explain"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_attributions_sum_to_the_output_difference_from_the_zero_baseline(invoke, model_dir, shape):
    rows = DIGITS.data[:3]
    runtime = load_runtime(model_dir)

    status, body, _ = invoke(_explain({"instances": rows.tolist(), "inference_ids": ["a", "b", "c"]}, shape))

    assert status == 200
    assert body["method"] == "integrated_gradients" and body["baseline"] == "zeros"
    assert body["completeness_tolerance"] == COMPLETENESS_TOLERANCE
    proba = runtime.predict_proba(np.vstack([rows, np.zeros((1, 64))]))
    for index, (explanation, expected_id) in enumerate(
        zip(body["explanations"], ["a", "b", "c"], strict=True)
    ):
        target = body["class_names"].index(explanation["label"])
        assert explanation["inference_id"] == expected_id
        assert target == int(proba[index].argmax())
        assert explanation["probability"] == pytest.approx(proba[index, target], abs=1e-6)
        assert explanation["baseline_probability"] == pytest.approx(proba[-1, target], abs=1e-6)
        gap = sum(explanation["attributions"]) - (
            explanation["probability"] - explanation["baseline_probability"]
        )
        assert len(explanation["attributions"]) == 64
        assert abs(gap) <= COMPLETENESS_TOLERANCE


def test_grid_is_the_attribution_vector_as_8_rows_of_8(invoke):
    status, body, _ = invoke(_explain({"instances": DIGITS.data[:2].tolist()}))

    assert status == 200
    for explanation in body["explanations"]:
        grid = explanation["attributions_grid"]
        assert len(grid) == 8 and all(len(line) == 8 for line in grid)
        assert np.asarray(grid).reshape(-1).tolist() == explanation["attributions"]


def test_explanations_are_not_recorded_and_generated_ids_are_uuid7(invoke, aws):
    status, body, _ = invoke(_explain({"instances": DIGITS.data[:2].tolist()}))

    assert status == 200
    assert items(aws["dynamodb"]) == {}
    assert all(e["inference_id"][14] == "7" for e in body["explanations"])


def test_more_rows_than_the_explain_limit_is_413(invoke, monkeypatch):
    nine = invoke(_explain({"instances": DIGITS.data[:9].tolist()}))
    monkeypatch.setenv("MAX_EXPLAIN_ROWS", "2")
    from functions.inference import app

    app.settings.cache_clear()
    app.service.cache_clear()
    three = invoke(_explain({"instances": DIGITS.data[:3].tolist()}))

    for status, payload, _ in (nine, three):
        assert (status, payload["error"]["code"]) == (413, "too_many_rows")
        assert "MAX_EXPLAIN_ROWS" in payload["error"]["message"]
    assert nine[1]["error"]["details"] == [{"rows": 9, "limit": 8}]
    assert three[1]["error"]["details"] == [{"rows": 3, "limit": 2}]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [c[1:] for c in CASES if c[0] != "too_many_rows"],
    ids=[c[0] for c in CASES if c[0] != "too_many_rows"],
)
def test_bad_body_gets_the_same_answer_as_predict(invoke, body, status, code):
    answered, payload, _ = invoke(_explain(body, "http"))

    assert (answered, payload["error"]["code"]) == (status, code)


def test_explain_never_logs_the_inputs(invoke, capsys):
    row = [13.375] * 64

    status, _, _ = invoke(_explain({"instances": [row]}))

    assert status == 200
    assert "13.375" not in capsys.readouterr().out


def test_rows_the_model_cannot_compute_are_the_callers_400_on_explain_too(invoke, monkeypatch):
    exact = runtime.LiteRTBackend.predict_proba

    def overflowing(self: runtime.LiteRTBackend, rows: np.ndarray) -> np.ndarray:
        # What a dynamic-range model does past about 1e37, at a threshold the float32 model reaches.
        proba = exact(self, rows)
        proba[np.abs(rows).max(axis=1) > 1e30] = np.nan
        return proba

    monkeypatch.setattr(runtime.LiteRTBackend, "predict_proba", overflowing)
    rows = [DIGITS.data[0].tolist(), [1e35] * 64]

    status, payload, response = invoke(_explain({"instances": rows}, "http"))

    assert (status, payload["error"]["code"]) == (400, "value_out_of_range")
    assert payload["error"]["details"] == [{"row": 1}]
    assert payload["error"]["message"].startswith("row 1 holds values outside what the model can compute")
    assert "e+35" not in response["body"]


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_each_explanation_reports_its_completeness_gap_and_flags_one_past_the_tolerance(invoke, shape):
    in_range = DIGITS.data[0].tolist()
    out_of_range = [1e6] * 64

    status, body, _ = invoke(_explain({"instances": [in_range, out_of_range]}, shape))

    assert status == 200
    kept, broken = body["explanations"]
    for explanation in (kept, broken):
        difference = explanation["probability"] - explanation["baseline_probability"]
        gap = abs(sum(explanation["attributions"]) - difference)
        assert explanation["completeness_gap"] == pytest.approx(gap, abs=1e-6)
    assert kept["completeness_gap"] <= COMPLETENESS_TOLERANCE
    assert kept["exceeds_tolerance"] is False
    assert broken["completeness_gap"] > 0.5
    assert broken["exceeds_tolerance"] is True
