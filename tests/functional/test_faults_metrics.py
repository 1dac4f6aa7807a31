"""Faults in the metrics function: what fails, what is kept, and that metrics go out once.

Faults are injected into the function's own boto3 clients (moto behind them) with a botocore
``before-call`` hook, which fails the call the way an exhausted SDK retry does. Lambda's
asynchronous retry is played by invoking the handler again with the same event.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError
from urllib3.exceptions import ProtocolError

from functions.metrics import app
from tests.events import load_event
from tests.functional.metrics import conftest as metrics_fixtures
from tests.functional.metrics.conftest import BUCKET, IDEMPOTENCY, Stack, record_predictions
from truthwatch.join import StoreUnavailableError
from truthwatch.labels import LabelStreamError

pytestmark = pytest.mark.slow  # the session's model is trained first

# The metrics function's moto fixtures, shared with its own functional tests.
stack = metrics_fixtures.stack
lambda_context = metrics_fixtures.lambda_context

EVENT = load_event("s3-object-created-labels")
KEY = unquote_plus(EVENT["Records"][0]["s3"]["object"]["key"])


def _event(etag: str, key: str = KEY) -> dict[str, Any]:
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"]["eTag"] = etag
    # S3 notifications carry the key URL-encoded.
    event["Records"][0]["s3"]["object"]["key"] = quote_plus(key)
    return event


def _inject(client: Any, operation: str, code: str) -> Callable[[], None]:
    """Make every ``operation`` call of ``client`` fail with ``code``; return the undo."""
    event_name = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"

    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "injected fault"}}, operation)

    client.meta.events.register(event_name, fail, unique_id="injected-fault")
    return lambda: client.meta.events.unregister(event_name, unique_id="injected-fault")


def _count(client: Any, operation: str) -> list[int]:
    """A counter of ``operation`` calls that reached the client."""
    calls: list[int] = []
    event_name = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event_name, lambda **_: calls.append(1), unique_id=f"count-{operation}")
    return calls


def _reports(stack: Stack) -> list[str]:
    listing = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _rejected_files(stack: Stack) -> list[str]:
    listing = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="rejected/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _completed_runs(stack: Stack) -> int:
    items = stack.dynamodb.scan(TableName=IDEMPOTENCY)["Items"]
    return sum(1 for item in items if item.get("status", {}).get("S") == "COMPLETED")


def _labelled(stack: Stack, rows: int = 40) -> tuple[datetime, str]:
    predicted_at = datetime.now(UTC) - timedelta(hours=2)
    record_predictions(stack, predicted_at, rows=rows)
    body = "inference_id,label\n" + "".join(
        f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    return predicted_at, stack.put_labels(KEY, body.encode())


def _window(predicted_at: datetime) -> tuple[datetime, datetime]:
    hour = predicted_at.replace(minute=0, second=0, microsecond=0)
    return hour, hour + timedelta(hours=2)


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"]
)
def test_join_fault_fails_the_event_publishes_nothing_and_the_retry_publishes_once(
    stack: Stack, lambda_context: LambdaContext, code: str
) -> None:
    predicted_at, etag = _labelled(stack)
    services = app.service().services
    undo = _inject(services.dynamodb, "BatchGetItem", code)
    puts = _count(services.cloudwatch, "PutMetricData")

    with pytest.raises((ClientError, StoreUnavailableError)):
        app.lambda_handler(_event(etag), lambda_context)

    assert (puts, _reports(stack), _completed_runs(stack)) == ([], [], 0)
    undo()
    retried = app.lambda_handler(_event(etag), lambda_context)
    again = app.lambda_handler(_event(etag), lambda_context)

    assert retried["processed"][0]["matched"] == 40
    assert again["processed"] == retried["processed"]
    assert len(puts) == retried["processed"][0]["put_metric_data_calls"] >= 1
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40


@pytest.mark.parametrize("code", ["InternalError", "SlowDown", "AccessDenied"])
def test_s3_read_fault_fails_the_event_and_keeps_nothing_half_done(
    stack: Stack, lambda_context: LambdaContext, code: str
) -> None:
    predicted_at, etag = _labelled(stack)
    services = app.service().services
    undo = _inject(services.s3, "GetObject", code)
    puts = _count(services.cloudwatch, "PutMetricData")

    with pytest.raises(ClientError, match=code):
        app.lambda_handler(_event(etag), lambda_context)

    assert (puts, _reports(stack), _completed_runs(stack)) == ([], [], 0)
    undo()
    assert app.lambda_handler(_event(etag), lambda_context)["processed"][0]["matched"] == 40
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40


def test_put_metric_data_fault_keeps_the_report_and_the_retry_publishes_once(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at, etag = _labelled(stack)
    services = app.service().services
    undo = _inject(services.cloudwatch, "PutMetricData", "InternalServiceError")

    with pytest.raises(ClientError, match="InternalServiceError"):
        app.lambda_handler(_event(etag), lambda_context)

    kept = _reports(stack)
    assert [k.rsplit(".", 1)[-1] for k in kept] == ["html", "json"]
    assert _completed_runs(stack) == 0
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 0
    undo()
    app.lambda_handler(_event(etag), lambda_context)
    app.lambda_handler(_event(etag), lambda_context)

    assert _reports(stack) == kept  # written again under the same keys, not a second copy
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40
    assert _completed_runs(stack) == 1


def test_a_second_object_relabelling_the_same_ids_is_counted_as_its_own_file(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at, etag = _labelled(stack)
    wrong = "inference_id,label\n" + "".join(
        f"{i},{(y + 1) % 10}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    second_key = KEY.replace(".csv", "-corrected.csv")
    second_etag = stack.put_labels(second_key, wrong.encode())

    first = app.lambda_handler(_event(etag), lambda_context)["processed"][0]
    second = app.lambda_handler(_event(second_etag, second_key), lambda_context)["processed"][0]

    # No file overrides another: each is joined and published on its own, so the hour holds both.
    assert (first["matched"], second["matched"]) == (40, 40)
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 80
    accuracy = stack.cloudwatch.get_metric_statistics(
        Namespace="Truthwatch",
        MetricName="accuracy_score",
        Dimensions=[
            {"Name": "ModelName", "Value": stack.card.name},
            {"Name": "ModelVersion", "Value": stack.card.version},
        ],
        StartTime=_window(predicted_at)[0],
        EndTime=_window(predicted_at)[1],
        Period=7200,
        Statistics=["Minimum", "Maximum", "SampleCount"],
    )["Datapoints"]
    assert len(accuracy) == 1
    assert accuracy[0]["SampleCount"] == 80  # each file's score, weighed by its 40 rows
    assert accuracy[0]["Minimum"] < 0.2 and accuracy[0]["Maximum"] > 0.8


class CutStream:
    """A GetObject body that hands out its first ``size`` bytes, then fails as a dropped connection does."""

    def __init__(self, body: Any, size: int, error: Exception) -> None:
        self._body = body
        self._left = size
        self._error = error

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            raise self._error
        chunk: bytes = self._body.read(min(amt or self._left, self._left))
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._body.close()


def _cut_next_read(client: Any, size: int, error: Exception) -> None:
    """Make the body of the next GetObject answer fail with ``error`` after ``size`` bytes."""
    done: list[int] = []

    def cut(parsed: dict[str, Any], **_: Any) -> None:
        if not done and "Body" in parsed:
            done.append(1)
            parsed["Body"] = CutStream(parsed["Body"], size, error)

    client.meta.events.register("after-call.s3.GetObject", cut, unique_id="cut-stream")


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://s3.eu-west-1.amazonaws.com"),
        IncompleteReadError(actual_bytes=300, expected_bytes=2000),
        ResponseStreamingError(error=ProtocolError("Connection broken")),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_label_read_failing_part_way_fails_the_event_and_the_retry_counts_every_row_once(
    stack: Stack, lambda_context: LambdaContext, error: Exception
) -> None:
    predicted_at, etag = _labelled(stack)
    services = app.service().services
    _cut_next_read(services.s3, 300, error)
    puts = _count(services.cloudwatch, "PutMetricData")

    with pytest.raises(LabelStreamError):
        app.lambda_handler(_event(etag), lambda_context)

    assert (puts, _reports(stack), _rejected_files(stack), _completed_runs(stack)) == ([], [], [], 0)
    retried = app.lambda_handler(_event(etag), lambda_context)["processed"][0]
    assert {k: retried[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")} == {
        "read": 40,
        "matched": 40,
        "unknown": 0,
        "rejected": 0,
        "duplicate": 0,
    }
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40
    assert _completed_runs(stack) == 1


def test_a_damaged_label_file_is_processed_once_with_its_rows_counted_once_and_the_damage_rejected(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at = datetime.now(UTC) - timedelta(hours=2)
    record_predictions(stack, predicted_at, rows=40)
    text = "inference_id,label\n" + "".join(
        f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    etag = stack.put_labels(KEY, gzip.compress(text.encode())[:-4])  # the gzip trailer cut short

    first = app.lambda_handler(_event(etag), lambda_context)["processed"][0]
    again = app.lambda_handler(_event(etag), lambda_context)["processed"][0]

    assert {k: first[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")} == {
        "read": 41,
        "matched": 40,
        "unknown": 0,
        "rejected": 1,
        "duplicate": 0,
    }
    assert again == first
    body = stack.s3.get_object(Bucket=BUCKET, Key=f"rejected/{KEY}.jsonl")["Body"].read().decode()
    [damage] = [json.loads(line) for line in body.splitlines()]
    assert damage["row"] == 42 and damage["reason"].startswith("damaged file: ")
    report_key = next(k for k in first["reports"] if k.endswith(".json"))
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert report["rows"]["balanced"] is True
    assert report["rows"]["rejected_reasons"] == {"damaged file": 1}
    assert "line 41" in report["rows"]["file_error"]
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40
    assert _completed_runs(stack) == 1


def test_rejected_rows_failing_to_upload_leave_no_report_and_the_retry_writes_both(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at, _ = _labelled(stack)
    body = "inference_id,label\n" + "".join(
        f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    etag = stack.put_labels(KEY, f"{body}{stack.ids[0]},cat\n".encode())
    services = app.service().services
    puts = _count(services.cloudwatch, "PutMetricData")

    def fail_rejected(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].startswith("rejected/"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected fault"}}, "PutObject")

    event_name = "before-parameter-build.s3.PutObject"  # params as the API takes them
    services.s3.meta.events.register(event_name, fail_rejected, unique_id="fail-rejected")
    with pytest.raises(ClientError, match="InternalError"):
        app.lambda_handler(_event(etag), lambda_context)

    # No report claims rejected rows that are not there, and nothing was published.
    assert (_reports(stack), _rejected_files(stack), puts, _completed_runs(stack)) == ([], [], [], 0)
    services.s3.meta.events.unregister(event_name, unique_id="fail-rejected")
    [summary] = app.lambda_handler(_event(etag), lambda_context)["processed"]

    assert (summary["matched"], summary["rejected"]) == (40, 1)
    assert len(_reports(stack)) == 2 and _rejected_files(stack) == [f"rejected/{KEY}.jsonl"]
    assert stack.metric_sum("labels_matched", *_window(predicted_at)) == 40
