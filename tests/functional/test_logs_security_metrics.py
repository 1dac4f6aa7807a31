"""At INFO the metrics function's logs hold no labels, no inference ids and no raw row text.

The metrics handler hands its Powertools JSON handler to the ``truthwatch`` package loggers when it
builds its service, so the lines both write go to that one handler's stream: the test points the
stream at a buffer and reads back exactly what Lambda would send to CloudWatch Logs. Every id of the
file (recorded, unknown, duplicated), a label that names no class and the text of a malformed row
are distinctive strings; none may appear at INFO or above. The counts and the object key must
appear, so that silencing the logs fails the test rather than passing it.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.metrics import app
from tests.events import load_event
from tests.functional.metrics import conftest as metrics_fixtures
from tests.functional.metrics.conftest import Stack, record_predictions

pytestmark = pytest.mark.slow

stack = metrics_fixtures.stack
lambda_context = metrics_fixtures.lambda_context

SECRET_LABEL = "label-text-7f3a9c"
RAW_MARKER = "raw-row-text-5e8d1b"
UNKNOWN_IDS = [f"0190ffff-dead-7000-8000-{i:012d}" for i in range(3)]
KEY = "labels/2024-06-03/security-check.csv"
LEVELS = {"INFO", "WARNING", "ERROR", "CRITICAL"}


def _csv(stack: Stack) -> tuple[bytes, dict[str, int]]:
    """Every kind of row, and the counts the file must produce."""
    lines = ["inference_id,label"]
    lines += [f"{stack.ids[i]},{stack.y_true[i]}" for i in range(40)]
    lines.insert(1, f"{stack.ids[0]},{(stack.y_true[0] + 1) % 10}")  # overridden by the later row
    lines += [f"{inference_id},4" for inference_id in UNKNOWN_IDS]
    lines += [f"{stack.ids[41]},{SECRET_LABEL}", f"{stack.ids[42]},", f"{RAW_MARKER}-{stack.ids[43]}"]
    body = ("\n".join(lines) + "\n").encode()
    return body, {"read": 47, "matched": 40, "duplicate": 1, "unknown": 3, "rejected": 3}


def _json_lines(stack: Stack) -> tuple[bytes, dict[str, int]]:
    """The same rows as JSON lines, the malformed one a line that is not JSON."""
    rows = [{"inference_id": stack.ids[0], "label": str((stack.y_true[0] + 1) % 10)}]
    rows += [{"inference_id": stack.ids[i], "label": str(stack.y_true[i])} for i in range(40)]
    rows += [{"inference_id": inference_id, "label": "4"} for inference_id in UNKNOWN_IDS]
    rows += [{"inference_id": stack.ids[41], "label": SECRET_LABEL}, {"inference_id": stack.ids[42]}]
    lines = [json.dumps(row) for row in rows] + [f'{{"{RAW_MARKER}": "{stack.ids[43]}"']
    return ("\n".join(lines) + "\n").encode(), {
        "read": 47,
        "matched": 40,
        "duplicate": 1,
        "unknown": 3,
        "rejected": 3,
    }


def _event(key: str, etag: str) -> dict[str, Any]:
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"].update({"key": key, "eTag": etag})
    return event


def _run(
    stack: Stack, body: bytes, key: str, context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Invoke the handler on ``body``; return its summary and the INFO+ lines, parsed and as text."""
    buffer = io.StringIO()
    monkeypatch.setattr(app.logger.registered_handler, "stream", buffer)
    monkeypatch.setattr(logging.getLogger("truthwatch"), "level", logging.getLogger("truthwatch").level)

    outcome = app.lambda_handler(_event(key, stack.put_labels(key, body)), context)

    text = [line for line in buffer.getvalue().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in text]
    kept = [(p, t) for p, t in zip(parsed, text, strict=True) if p.get("level") in LEVELS]
    return outcome["processed"][0], [p for p, _ in kept], [t for _, t in kept]


@pytest.mark.parametrize(
    ("build", "key"),
    [(_csv, KEY), (_json_lines, KEY.replace(".csv", ".jsonl"))],
    ids=["csv", "json-lines"],
)
def test_metrics_logs_counts_and_key_but_no_labels_ids_or_rows_at_info(
    build: Any,
    key: str,
    stack: Stack,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=2), rows=50)
    body, expected = build(stack)

    summary, lines, texts = _run(stack, body, key, lambda_context, monkeypatch)

    assert {k: summary[k] for k in expected} == expected
    [processed] = [line for line in lines if line["message"] == "label object processed"]
    assert processed["key"] == key
    assert {k: processed[k] for k in expected} == expected
    assert processed["name"] == "truthwatch.label_job"  # the package logger reached the stream
    assert any(line["message"] == "Label event handled" for line in lines)

    secrets = [*stack.ids[:50], *UNKNOWN_IDS, SECRET_LABEL, RAW_MARKER]
    leaks = sorted({secret for secret in secrets for text in texts if secret in text})
    assert leaks == []


def test_metrics_logs_no_ids_when_a_gzip_file_matches_nothing(
    stack: Stack, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"{inference_id},{SECRET_LABEL}" for inference_id in UNKNOWN_IDS]
    body = gzip.compress(("id,y_true\n" + "\n".join(rows) + "\n").encode())
    key = KEY + ".gz"

    summary, lines, texts = _run(stack, body, key, lambda_context, monkeypatch)

    assert (summary["read"], summary["unknown"], summary["matched"]) == (3, 3, 0)
    assert any(line["message"] == "label object processed" and line["key"] == key for line in lines)
    assert not [text for text in texts if any(s in text for s in (*UNKNOWN_IDS, SECRET_LABEL))]
