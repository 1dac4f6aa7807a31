"""The metrics function end to end against moto: events in, reports, rejected rows and metrics out."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import numpy as np
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from sklearn.metrics import accuracy_score, f1_score

from functions.metrics import app
from tests.events import load_event
from tests.functional.metrics.conftest import BUCKET, Stack, record_predictions

CSV_KEY = "labels/2024-06-03/déjà vu+batch.csv"


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _s3_event(key_etag: str) -> dict[str, object]:
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"]["eTag"] = key_etag
    return event


def _messy_csv(stack: Stack) -> tuple[bytes, dict[str, int]]:
    """A label file with every kind of row, and the counts it must produce."""
    lines = ["\ufeff Inference_Id , Ground_Truth ,note"]
    spellings = ["{}", " {} ", "{}.0", '"{}"']
    for i in range(250):
        label = spellings[i % 4].format(stack.y_true[i])
        lines.append(f"{stack.ids[i]},{label},ok")
        if i % 60 == 0:
            lines.append("")
    for i in range(5):  # a wrong label first, then the right one: the later row wins
        lines.insert(1, f"{stack.ids[i]},{(stack.y_true[i] + 5) % 10},early")
    lines += [f"0190ffff-0000-7000-8000-{i:012d},3,not recorded" for i in range(4)]
    lines += [f"{stack.ids[260]},,missing label", f"{stack.ids[261]},cat,unknown", f"{stack.ids[262]}"]
    lines += [f'{stack.ids[263]},"4,a quote left open']
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return body, {"read": 250 + 5 + 4 + 4, "matched": 250, "duplicate": 5, "unknown": 4, "rejected": 4}


def test_metrics_accounts_for_every_row_of_a_messy_csv(stack: Stack, lambda_context: LambdaContext) -> None:
    predicted_at = datetime.now(UTC) - timedelta(hours=3)
    record_predictions(stack, predicted_at)
    body, expected = _messy_csv(stack)
    etag = stack.put_labels(CSV_KEY, body)

    outcome = app.lambda_handler(_s3_event(etag), lambda_context)

    [summary] = outcome["processed"]
    assert {k: summary[k] for k in expected} == expected
    assert (
        summary["read"]
        == summary["matched"] + summary["unknown"] + summary["rejected"] + summary["duplicate"]
    )

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    report_key = f"reports/{stack.card.version}/{today}/2024-06-03/déjà vu+batch.csv.json"
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    y_true, y_pred = np.array(stack.y_true[:250]), np.array(stack.y_pred[:250])
    metrics = report["quality"]["metrics"]
    assert metrics["accuracy_score"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["f1_macro_score"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report["rows"]["balanced"] is True
    assert report["quality"]["bootstrap"]["accuracy_score_std"] > 0
    assert len(report["drift"]["feature_psi"]) == 64
    assert report["drift"]["feature_psi_max"] < 0.25  # held-out digits look like the training digits

    html = (
        stack.s3.get_object(Bucket=BUCKET, Key=report_key.replace(".json", ".html"))["Body"].read().decode()
    )
    assert "Confusion matrix" in html and "Row accounting" in html and "<script" not in html

    rejected = stack.s3.get_object(Bucket=BUCKET, Key=f"rejected/{CSV_KEY}.jsonl")["Body"].read().decode()
    reasons = [json.loads(line)["reason"] for line in rejected.splitlines()]
    assert reasons[0] == "missing label"
    assert reasons[1].startswith("unknown label 'cat'")
    assert reasons[2].startswith("row has 1 fields")
    assert reasons[3] == "unterminated quote"

    hour = _hour(predicted_at)
    window = (hour - timedelta(minutes=1), hour + timedelta(hours=2))
    assert stack.metric_sum("labels_matched", *window) == 250
    assert stack.dimension_sets("labels_matched") == {("ModelName",), ("ModelName", "ModelVersion")}
    average = stack.metric_average("accuracy_score", *window)
    assert average == pytest.approx(metrics["accuracy_score"], abs=1e-9)


def test_metrics_weighs_each_files_hourly_scores_by_its_rows(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at = datetime.now(UTC).replace(minute=5) - timedelta(hours=3)
    record_predictions(stack, predicted_at, rows=300)
    files = {
        "labels/weighted/small.csv": range(20),  # labelled against every prediction: accuracy 0
        "labels/weighted/large.csv": range(20, 300),
    }
    for key, rows in files.items():
        wrong = key.endswith("small.csv")
        body = "id,label\n" + "".join(
            f"{stack.ids[i]},{(stack.y_pred[i] + 1) % 10 if wrong else stack.y_true[i]}\n" for i in rows
        )
        event = _s3_event(stack.put_labels(key, body.encode()))
        event["Records"][0]["s3"]["object"]["key"] = key
        app.lambda_handler(event, lambda_context)

    large = np.array(stack.y_true[20:300]) == np.array(stack.y_pred[20:300])
    hour = _hour(predicted_at)
    average = stack.metric_average("accuracy_score", hour, hour + timedelta(hours=1))

    assert average == pytest.approx(large.sum() / 300, abs=1e-9)
    assert average != pytest.approx(large.mean() / 2, abs=0.01)


def test_metrics_publishes_once_when_an_object_is_delivered_twice(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at = datetime.now(UTC) - timedelta(hours=2)
    record_predictions(stack, predicted_at, rows=40)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(CSV_KEY, body.encode())

    first = app.lambda_handler(_s3_event(etag), lambda_context)
    app.service.cache_clear()  # a new container: only the DynamoDB record remembers the first run
    second = app.lambda_handler(_s3_event(etag), lambda_context)

    assert first["processed"] == second["processed"]
    hour = _hour(predicted_at)
    assert stack.metric_sum("labels_matched", hour, hour + timedelta(hours=2)) == 40


def test_metrics_ignores_s3_test_event(stack: Stack, lambda_context: LambdaContext) -> None:
    outcome = app.lambda_handler(load_event("s3-test-event"), lambda_context)

    assert outcome == {"processed": [], "skipped": ["s3:TestEvent"]}


@pytest.mark.parametrize(("event", "kind"), [(["labels/x.csv"], "list"), ("labels/x.csv", "str")])
def test_metrics_skips_an_event_that_is_not_a_json_object(
    stack: Stack, lambda_context: LambdaContext, event: object, kind: str
) -> None:
    outcome = app.lambda_handler(event, lambda_context)  # type: ignore[arg-type]

    assert outcome == {"processed": [], "skipped": [f"event is not a JSON object (a {kind})"]}


def test_metrics_handles_every_record_and_skips_markers(stack: Stack, lambda_context: LambdaContext) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=20)
    jsonl = "".join(
        json.dumps({"inferenceId": i, "label": y, "extra": [1]}) + "\n"
        for i, y in zip(stack.ids[:10], stack.y_true[:10], strict=True)
    )
    csv_gz = gzip.compress(
        (
            "inference_id,y_true\n"
            + "".join(f"{i},{y}\n" for i, y in zip(stack.ids[10:], stack.y_true[10:], strict=True))
        ).encode()
    )
    event = load_event("s3-multi-record-labels")
    event["Records"][0]["s3"]["object"]["eTag"] = stack.put_labels("labels/part-1.jsonl", jsonl.encode())
    event["Records"][1]["s3"]["object"]["eTag"] = stack.put_labels("labels/part-2.csv.gz", csv_gz)

    outcome = app.lambda_handler(event, lambda_context)

    assert [(p["key"], p["matched"]) for p in outcome["processed"]] == [
        ("labels/part-1.jsonl", 10),
        ("labels/part-2.csv.gz", 10),
    ]
    assert sorted(outcome["skipped"]) == ["folder marker", "zero-byte object"]


def test_metrics_reports_failed_sqs_messages_for_redelivery(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=10)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(CSV_KEY, body.encode())
    event = load_event("sqs-s3-labels")
    good = json.loads(event["Records"][0]["body"])
    good["Records"][0]["s3"]["object"]["eTag"] = etag
    event["Records"][0]["body"] = json.dumps(good)
    broken = json.loads(json.dumps(good))
    broken["Records"][0]["s3"]["bucket"]["name"] = "no-such-bucket-anywhere"
    event["Records"][1]["body"] = json.dumps(broken)

    outcome = app.lambda_handler(event, lambda_context)

    assert [p["matched"] for p in outcome["processed"]] == [10]
    assert outcome["batchItemFailures"] == [{"itemIdentifier": event["Records"][1]["messageId"]}]


def test_metrics_reads_s3_events_wrapped_in_sns(stack: Stack, lambda_context: LambdaContext) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=10)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(CSV_KEY, body.encode())
    event = load_event("sns-s3-labels")
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message["Records"][0]["s3"]["object"]["eTag"] = etag
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)

    outcome = app.lambda_handler(event, lambda_context)

    assert [p["key"] for p in outcome["processed"]] == [CSV_KEY]


def test_metrics_reads_sagemaker_ground_truth_from_eventbridge(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=12)
    lines = []
    for n, (i, y) in enumerate(zip(stack.ids, stack.y_true, strict=True)):
        metadata = {"eventId": i} if n % 2 else {"inferenceId": i, "eventId": "ignored"}
        lines.append(
            json.dumps(
                {
                    "groundTruthData": {"data": str(y), "encoding": "CSV"},
                    "eventMetadata": metadata,
                    "eventVersion": "0",
                }
            )
        )
    key = "labels/2024-06-03/sagemaker ground+truth.jsonl"
    etag = stack.put_labels(key, ("\n".join(lines) + "\n").encode())
    event = load_event("eventbridge-s3-object-created-labels")
    event["detail"]["object"]["etag"] = etag

    outcome = app.lambda_handler(event, lambda_context)

    [summary] = outcome["processed"]
    assert (summary["key"], summary["matched"], summary["read"]) == (key, 12, 12)


def test_metrics_keeps_predictions_older_than_two_weeks_in_the_report_only(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    predicted_at = datetime.now(UTC) - timedelta(days=20)
    record_predictions(stack, predicted_at, rows=30)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(CSV_KEY, body.encode())

    [summary] = app.lambda_handler(_s3_event(etag), lambda_context)["processed"]

    report_key = next(k for k in summary["reports"] if k.endswith(".json"))
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert [h["published"] for h in report["hours"]] == [False]
    assert report["publication"]["not_published_hours"]
    hour = _hour(predicted_at)
    assert stack.metric_sum("accuracy_score", hour, hour + timedelta(hours=2)) == 0
    assert stack.metric_sum("log_loss", hour, hour + timedelta(hours=2)) == 0  # per version: too old too
    assert report["quality"]["metrics"]["accuracy_score"] > 0.8


def test_metrics_reports_a_file_with_no_known_ids(stack: Stack, lambda_context: LambdaContext) -> None:
    etag = stack.put_labels(CSV_KEY, b"id,label\nnever-recorded-1,3\nnever-recorded-2,4\n")

    [summary] = app.lambda_handler(_s3_event(etag), lambda_context)["processed"]

    assert (summary["read"], summary["unknown"], summary["matched"]) == (2, 2, 0)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    report = json.loads(
        stack.s3.get_object(Bucket=BUCKET, Key=f"reports/none/{today}/2024-06-03/déjà vu+batch.csv.json")[
            "Body"
        ].read()
    )
    assert report["rows"]["unknown_examples"] == ["never-recorded-1", "never-recorded-2"]
    now = datetime.now(UTC)
    assert (
        stack.metric_sum("labels_unknown", now - timedelta(hours=1), now + timedelta(hours=1), version=False)
        == 2
    )


def test_metrics_skips_an_object_replaced_since_its_notification(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    stack.put_labels(CSV_KEY, b"id,label\na,1\n")

    outcome = app.lambda_handler(_s3_event("0123456789abcdef0123456789abcdef"), lambda_context)

    assert outcome["processed"] == [{"status": "gone", "key": CSV_KEY}]


def test_metrics_rejects_the_rows_of_unreadable_prediction_records_and_joins_the_rest(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=2), rows=40)
    table = "truthwatch-predictions"
    key = {"inference_id": {"S": stack.ids[0]}}
    stack.dynamodb.update_item(TableName=table, Key=key, UpdateExpression="REMOVE expires_at")
    stack.dynamodb.update_item(
        TableName=table,
        Key={"inference_id": {"S": stack.ids[1]}},
        UpdateExpression="SET predicted_at = :bad",
        ExpressionAttributeValues={":bad": {"S": "not a time"}},
    )
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(CSV_KEY, body.encode())

    [summary] = app.lambda_handler(_s3_event(etag), lambda_context)["processed"]

    assert {k: summary[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")} == {
        "read": 40,
        "matched": 39,
        "unknown": 0,
        "rejected": 1,
        "duplicate": 0,
    }
    rejected = stack.s3.get_object(Bucket=BUCKET, Key=f"rejected/{CSV_KEY}.jsonl")["Body"].read().decode()
    assert [json.loads(line)["reason"] for line in rejected.splitlines()] == [
        "recorded prediction unreadable: predicted_at"
    ]


def test_metrics_a_clean_reupload_under_the_same_key_empties_its_rejected_file(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=10)
    rows = "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    first = stack.put_labels(CSV_KEY, f"id,label\n{rows}{stack.ids[0]},cat\n".encode())
    app.lambda_handler(_s3_event(first), lambda_context)
    rejected_key = f"rejected/{CSV_KEY}.jsonl"
    assert len(stack.s3.get_object(Bucket=BUCKET, Key=rejected_key)["Body"].read().splitlines()) == 1

    second = stack.put_labels(CSV_KEY, f"id,label\n{rows}".encode())  # corrected: nothing rejected
    [summary] = app.lambda_handler(_s3_event(second), lambda_context)["processed"]

    assert (summary["matched"], summary["rejected"]) == (10, 0)
    assert stack.s3.get_object(Bucket=BUCKET, Key=rejected_key)["Body"].read() == b""
    assert rejected_key in summary["reports"]


def test_metrics_rejects_nested_and_lone_surrogate_json_rows_and_processes_the_rest(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=10)
    good = [json.dumps({"inference_id": i, "label": y}) for i, y in zip(stack.ids, stack.y_true, strict=True)]
    deep = "[" * 100_000 + "]" * 100_000
    bad = [
        f'{{"inference_id": "{stack.ids[0]}", "label": {deep}}}',
        f'{{"inference_id": "{stack.ids[1]}", "label": "\\ud800"}}',  # a matched id
        '{"inference_id": "zz\\udc00", "label": "1"}',  # an id no prediction has
    ]
    etag = stack.put_labels(CSV_KEY, "\n".join([*bad, *good]).encode())

    [summary] = app.lambda_handler(_s3_event(etag), lambda_context)["processed"]

    assert {k: summary[k] for k in ("read", "matched", "unknown", "rejected")} == {
        "read": 13,
        "matched": 10,
        "unknown": 0,
        "rejected": 3,
    }
    rejected = stack.s3.get_object(Bucket=BUCKET, Key=f"rejected/{CSV_KEY}.jsonl")["Body"].read().decode()
    assert [json.loads(line)["reason"] for line in rejected.splitlines()] == [
        "not valid JSON (nested too deeply)",
        "not valid Unicode: a lone surrogate",
        "not valid Unicode: a lone surrogate",
    ]
    assert len(summary["reports"]) == 3


def test_metrics_a_label_key_of_1024_bytes_gets_output_keys_s3_accepts(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), rows=10)
    stem = "labels/" + "é" * 400
    key = stem + "K" * (1024 - len(f"{stem}.csv".encode())) + ".csv"
    rows = "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))
    etag = stack.put_labels(key, f"id,label\n{rows}{stack.ids[0]},cat\n".encode())
    event = _s3_event(etag)
    event["Records"][0]["s3"]["object"]["key"] = quote_plus(key)  # type: ignore[index]

    [summary] = app.lambda_handler(event, lambda_context)["processed"]

    assert len(key.encode()) == 1024 and (summary["matched"], summary["rejected"]) == (10, 1)
    listed = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    written = [k for k in listed if k.startswith(("reports/", "rejected/"))]
    assert sorted(written) == sorted(summary["reports"]) and len(written) == 3
    assert max(len(k.encode()) for k in written) <= 1024  # S3's limit; moto does not enforce it
    report_key = next(k for k in written if k.endswith(".json"))
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert report["source"]["key"] == key
