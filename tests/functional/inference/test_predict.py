from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from aws_lambda_powertools.metrics.provider import cold_start
from sklearn.datasets import load_digits

from tests.events import load_event
from tests.functional.inference.conftest import BUCKET, items
from truthwatch.ids import uuid7_time_ms
from truthwatch.records import decode_binned, decode_raw, parse_time

DIGITS = load_digits()


def _rest(body: object) -> dict:
    event = load_event("apigw-rest-predict")
    event["body"] = json.dumps(body)
    return event


def test_rest_event_predicts_and_records_each_row_binned(invoke, aws, exported_model):
    card = exported_model.card
    status, body, _ = invoke(load_event("apigw-rest-predict"))

    assert status == 200
    assert (body["model_name"], body["model_version"]) == (card.name, card.version)
    assert [p["inference_id"] for p in body["predictions"]] == ["order-1001:row-0", "order-1001:row-1"]
    assert [p["label"] for p in body["predictions"]] == ["0", "1"]
    first = body["predictions"][0]
    assert len(first["probabilities"]) == 10
    assert first["confidence"] == max(first["probabilities"])
    assert sum(first["probabilities"]) == pytest.approx(1.0, abs=1e-4)

    stored = items(aws["dynamodb"])
    item = stored["order-1001:row-0"]
    assert item["model_name"]["S"] == card.name
    assert item["model_version"]["S"] == card.version
    assert item["label"]["S"] == "0"
    assert item["label_index"]["N"] == "0"
    assert float(item["confidence"]["N"]) == first["confidence"]
    assert [float(p["N"]) for p in item["probabilities"]["L"]] == first["probabilities"]
    assert item["inputs_mode"]["S"] == "binned"
    bins = decode_binned(item["inputs"]["B"], 64)
    edges = np.asarray(card.baseline.features[0].bin_edges)
    assert bins.tolist() == np.searchsorted(edges, DIGITS.data[0], side="right").tolist()
    predicted_at = parse_time(item["predicted_at"]["S"])
    assert abs((datetime.now(UTC) - predicted_at).total_seconds()) < 60
    assert int(item["expires_at"]["N"]) == pytest.approx(predicted_at.timestamp() + 30 * 86400, abs=1)


@pytest.mark.parametrize("mode", ["raw", "none"])
def test_capture_mode_decides_what_inputs_are_stored(invoke, aws, monkeypatch, mode):
    monkeypatch.setenv("CAPTURE_INPUTS", mode)
    monkeypatch.setenv("CAPTURE_TTL_DAYS", "7")

    status, _, _ = invoke(load_event("apigw-rest-predict"))

    item = items(aws["dynamodb"])["order-1001:row-1"]
    assert status == 200
    assert item["inputs_mode"]["S"] == mode
    if mode == "raw":
        assert decode_raw(item["inputs"]["B"], 64).tolist() == DIGITS.data[1].tolist()
    else:
        assert "inputs" not in item
    predicted_at = parse_time(item["predicted_at"]["S"])
    assert int(item["expires_at"]["N"]) == pytest.approx(predicted_at.timestamp() + 7 * 86400, abs=1)


def test_http_api_event_gets_generated_time_ordered_ids(invoke, aws):
    event = load_event("apigw-http-predict")
    event["body"] = json.dumps({"instances": DIGITS.data[:5].tolist()})

    status, body, _ = invoke(event)

    ids = [p["inference_id"] for p in body["predictions"]]
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["0", "1", "2", "3", "4"]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert abs(uuid7_time_ms(ids[0]) / 1000 - datetime.now(UTC).timestamp()) < 60
    assert set(items(aws["dynamodb"])) == set(ids)


def test_gzip_base64_body_with_charset_is_decoded(invoke):
    status, body, _ = invoke(load_event("apigw-rest-predict-gzip-base64"))

    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["0"]


@pytest.mark.parametrize(
    "inputs", [DIGITS.data[2:4].tolist(), {"pixels": DIGITS.data[2:4].tolist()}], ids=["tensor", "named"]
)
def test_columnar_inputs_form_is_accepted(invoke, inputs):
    status, body, _ = invoke(_rest({"inputs": inputs}))

    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["2", "3"]


def test_header_casing_and_media_type_parameters_do_not_matter(invoke):
    event = load_event("apigw-http-predict")
    event["headers"] = {"CONTENT-TYPE": "Application/JSON; charset=UTF-8"}

    status, _, _ = invoke(event)

    assert status == 200


def test_health_and_model_card(invoke, exported_model):
    status, health, _ = invoke(load_event("apigw-http-health"))
    event = load_event("apigw-http-health")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/model"
    card_status, card, _ = invoke(event)

    assert (status, health["status"], health["backend"]) == (200, "ok", "litert")
    assert health["model_version"] == exported_model.card.version
    assert card_status == 200
    assert card["version"] == exported_model.card.version
    assert "files" not in card and len(card["baseline"]["features"]) == 64


def test_cold_start_publishes_the_model_card(invoke, aws, exported_model):
    invoke(load_event("apigw-http-health"))

    card = exported_model.card
    obj = aws["s3"].get_object(Bucket=BUCKET, Key=f"models/{card.name}/{card.version}/model.json")
    assert json.loads(obj["Body"].read())["version"] == card.version


def test_card_upload_failure_does_not_break_serving(invoke, aws, monkeypatch, caplog):
    monkeypatch.setenv("DATA_BUCKET", "no-such-bucket")

    status, _, _ = invoke(load_event("apigw-rest-predict"))

    assert status == 200
    warnings = [r for r in caplog.records if r.getMessage() == "model card upload failed"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert warnings[0].bucket == "no-such-bucket"


def test_metrics_carry_both_dimension_sets_and_per_class_counts(invoke, capsys, exported_model, monkeypatch):
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    invoke(load_event("apigw-rest-predict"))

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    request = next(doc for doc in lines if "inference_rows" in doc)
    per_class = {doc["PredictedClass"]: doc["predictions"] for doc in lines if "predictions" in doc}
    assert request["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["ModelName", "ModelVersion"],
        ["ModelName"],
    ]
    assert request["ModelVersion"] == exported_model.card.version
    assert request["inference_rows"] == [2.0]
    assert request["capture_failures"] == [0.0]
    assert 0.5 < request["mean_confidence"][0] <= 1.0
    assert per_class == {"0": [1.0], "1": [1.0]}
    assert any("ColdStart" in doc for doc in lines)
