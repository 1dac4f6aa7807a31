"""The image serves a quantized TFLite variant when built with ``MODEL_VARIANT``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.events import load_event
from tests.functional.inference.conftest import items
from truthwatch import runtime

ROW = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] * 8


def _rows_event(shape: str, rows: list[list[float]], path: str = "/predict") -> dict:
    if shape == "rest":
        event = load_event("apigw-rest-predict")
        event["path"] = path
    else:
        event = load_event("apigw-http-predict")
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["body"] = json.dumps({"instances": rows})
    return event


def test_dynamic_range_variant_answers_records_and_reports_itself(invoke, aws, monkeypatch, exported_model):
    assert exported_model.card.variants["dynamic_range"].exported
    monkeypatch.setenv("MODEL_VARIANT", "dynamic_range")
    loaded: list[str] = []

    class Recording(runtime.LiteRTBackend):
        def __init__(self, path: Path) -> None:
            loaded.append(path.name)
            super().__init__(path)

    monkeypatch.setattr(runtime, "LiteRTBackend", Recording)

    health_status, health, _ = invoke(load_event("apigw-http-health"))
    status, body, _ = invoke(load_event("apigw-rest-predict"))

    assert loaded == ["model.dynamic_range.tflite"]
    assert (health_status, health["variant"], health["backend"]) == (200, "dynamic_range", "litert")
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["0", "1"]
    stored = items(aws["dynamodb"])
    assert set(stored) == {"order-1001:row-0", "order-1001:row-1"}
    assert stored["order-1001:row-0"]["model_version"]["S"] == exported_model.card.version


def test_health_reports_the_default_float32_variant(invoke):
    status, health, _ = invoke(load_event("apigw-http-health"))

    assert (status, health["variant"]) == (200, "float32")


def test_unknown_variant_fails_at_load_naming_the_setting(invoke, monkeypatch):
    monkeypatch.setenv("MODEL_VARIANT", "int4")

    with pytest.raises(ValueError, match="MODEL_VARIANT"):
        invoke(load_event("apigw-http-health"))


def test_a_quantized_variant_is_explained_through_float32_so_attributions_still_add_up(invoke, monkeypatch):
    monkeypatch.setenv("MODEL_VARIANT", "full_integer")
    event = load_event("apigw-http-predict")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/explain"

    status, body, _ = invoke(event)

    assert (status, body["explained_variant"]) == (200, "float32")
    for explanation in body["explanations"]:
        difference = explanation["probability"] - explanation["baseline_probability"]
        assert abs(sum(explanation["attributions"]) - difference) <= body["completeness_tolerance"]


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_values_the_quantized_model_cannot_compute_are_the_callers_400_naming_rows_not_values(
    invoke, aws, monkeypatch, shape
):
    monkeypatch.setenv("MODEL_VARIANT", "dynamic_range")
    rows = [ROW, [3e38] + [0.0] * 63, ROW, [0.0] * 10 + [1.5e37] + [0.0] * 53]

    status, payload, response = invoke(_rows_event(shape, rows))

    assert (status, payload["error"]["code"]) == (400, "value_out_of_range")
    assert payload["error"]["details"] == [{"row": 1}, {"row": 3}]
    assert payload["error"]["message"].startswith("rows 1, 3 hold values outside what the model can compute")
    assert "e+3" not in response["body"] and "e3" not in response["body"]
    assert items(aws["dynamodb"]) == {}


@pytest.mark.parametrize("shape", ["rest", "http"])
def test_a_non_finite_output_from_rows_in_the_trained_range_stays_a_500(
    invoke, aws, monkeypatch, shape, caplog
):
    def broken(self: runtime.LiteRTBackend, rows: np.ndarray) -> np.ndarray:
        return np.full((len(rows), 10), np.nan, dtype=np.float32)

    monkeypatch.setattr(runtime.LiteRTBackend, "predict_proba", broken)

    status, payload, _ = invoke(_rows_event(shape, [ROW, ROW]))

    assert (status, payload["error"]["code"]) == (500, "model_output_invalid")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["model output invalid"]
    assert items(aws["dynamodb"]) == {}
