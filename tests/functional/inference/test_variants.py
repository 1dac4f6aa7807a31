"""The image serves a quantized TFLite variant when built with ``MODEL_VARIANT``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.events import load_event
from tests.functional.inference.conftest import items
from truthwatch import runtime


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
