"""When the table refuses records, the answer still comes, and the log holds what replay restores."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import boto3
import numpy as np

from functions.inference import app
from tests.events import load_event
from tests.functional.inference.conftest import REGION, TABLE, create_table, items
from truthwatch import cli
from truthwatch.capture import FAILURE_EVENT, DynamoDBRecorder, build_records


def _log_lines(caplog) -> list[str]:
    """The JSON lines the Powertools logger wrote, as CloudWatch Logs would hold them."""
    formatter = app.logger.registered_formatter
    return [formatter.format(r) for r in caplog.records if r.name == app.logger.name]


def test_lost_records_are_logged_counted_and_replayed(invoke, aws, monkeypatch, caplog, capsys, tmp_path):
    monkeypatch.setenv("PREDICTIONS_TABLE", "no-such-table")
    caplog.set_level(logging.INFO)

    status, body, _ = invoke(load_event("apigw-rest-predict"))

    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["0", "1"]
    lines = _log_lines(caplog)
    failures = [json.loads(line) for line in lines if FAILURE_EVENT in line]
    assert sorted(f["record"]["inference_id"] for f in failures) == ["order-1001:row-0", "order-1001:row-1"]
    assert {f["level"] for f in failures} == {"ERROR"}
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert [doc["capture_failures"] for doc in emf if "capture_failures" in doc] == [[2.0]]
    assert items(aws["dynamodb"]) == {}

    export = tmp_path / "export.log"
    export.write_text(
        "".join(f"2026-12-03T10:30:05.123Z {line}\n" for line in lines) + "START RequestId: abc\n",
        encoding="utf-8",
    )
    assert cli.main(["replay", str(export), "--table", TABLE]) == 0
    assert cli.main(["replay", str(export), "--table", TABLE]) == 0

    stored = items(aws["dynamodb"])
    assert set(stored) == {"order-1001:row-0", "order-1001:row-1"}
    replayed = stored["order-1001:row-0"]
    original = failures[[f["record"]["inference_id"] for f in failures].index("order-1001:row-0")]["record"]
    assert replayed["predicted_at"]["S"] == original["predicted_at"]
    assert [p["N"] for p in replayed["probabilities"]["L"]] == original["probabilities"]
    assert replayed["inputs_mode"]["S"] == "binned" and len(replayed["inputs"]["B"]) == 64


def test_unprocessed_items_are_retried_until_written(aws, exported_model):
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client, "second")
    calls = []
    real = client.batch_write_item

    def flaky(**kwargs):
        calls.append(len(kwargs["RequestItems"]["second"]))
        if len(calls) == 1:
            requests = kwargs["RequestItems"]["second"]
            real(RequestItems={"second": requests[:10]})
            return {"UnprocessedItems": {"second": requests[10:]}}
        return real(**kwargs)

    client.batch_write_item = flaky
    recorder = DynamoDBRecorder(client, "second", sleep=lambda _: None)
    proba = np.full((30, 10), 0.1)
    rows = np.zeros((30, 64), dtype=np.float32)
    records = build_records(
        [f"id-{i}" for i in range(30)], exported_model.card, proba, rows, "binned", datetime.now(UTC), 30
    )

    lost = recorder.record(records)

    assert lost == []
    assert calls == [25, 15, 5]
    assert len(items(client, "second")) == 30
