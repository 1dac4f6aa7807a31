"""The whole loop through the local stack: HTTP in, records, labels, metrics, alarms, emails."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from infra.local.demo import shift_digits
from infra.local.runtime import LocalFunction
from infra.local.stack import LocalStack, WrittenReport
from tests.e2e.conftest import PERIOD_S
from tests.e2e.helpers import alarm_state, http, predict, report_for, upload_labels, wait_for
from tests.events import load_event
from truthwatch.dataset import load_digits_split

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def heldout() -> tuple[np.ndarray, list[str]]:
    """The held-out digits and their class names."""
    split = load_digits_split()
    return split.x_heldout, [split.class_names[i] for i in split.y_heldout]


def test_http_predict_records_each_row_in_the_table(local_stack: LocalStack) -> None:
    predictions = predict(local_stack, [[0.0] * 64, [16.0] * 64])

    table = local_stack.client("dynamodb")
    for prediction in predictions:
        item = table.get_item(
            TableName=local_stack.name_of("PredictionsTable"),
            Key={"inference_id": {"S": prediction["inference_id"]}},
        )["Item"]
        assert item["label"]["S"] == prediction["label"]
        assert item["inputs_mode"]["S"] == "binned"
    assert local_stack.request_counts()[200] >= 1


def test_http_explain_answers_through_the_template_route(
    local_stack: LocalStack, heldout: tuple[np.ndarray, list[str]]
) -> None:
    rows, _ = heldout
    status, body = http(local_stack, "POST", "/explain", {"instances": [rows[0].tolist()]})

    explanation = body["explanations"][0]
    assert status == 200
    assert len(explanation["attributions_grid"]) == 8
    assert all(len(line) == 8 for line in explanation["attributions_grid"])


def test_gateway_answers_unknown_routes_itself(local_stack: LocalStack) -> None:
    status, body = http(local_stack, "GET", "/no-such-route")

    assert status == 403
    assert body == {"message": "Missing Authentication Token"}


def _raw(stack: LocalStack, head: str, body: bytes = b"") -> bytes:
    """Everything the gateway sends back for one raw HTTP/1.1 request, until it closes the connection."""
    address = urlsplit(stack.api_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_a_trailing_slash_reaches_the_route_as_on_a_deployed_rest_api(local_stack: LocalStack) -> None:
    status, body = http(local_stack, "POST", "/predict/", {"instances": [[0.0] * 64]})

    assert status == 200
    assert len(body["predictions"]) == 1


def test_a_chunked_body_reaches_the_handler_whole(local_stack: LocalStack) -> None:
    payload = json.dumps({"instances": [[0.0] * 64, [16.0] * 64]}).encode()
    chunks = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:50], payload[50:])) + b"0\r\n\r\n"
    )

    answer = _raw(
        local_stack,
        "POST /predict HTTP/1.1\nHost: local\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\nConnection: close\n",
        chunks,
    )

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(body)["predictions"]) == 2


@pytest.mark.parametrize("length", ["abc", "-1"])
def test_a_malformed_content_length_is_a_400_and_the_connection_closes(
    local_stack: LocalStack, length: str
) -> None:
    answered = local_stack.request_counts().get(400, 0)

    answer = _raw(
        local_stack,
        f"POST /predict HTTP/1.1\nHost: local\nContent-Type: application/json\nContent-Length: {length}\n",
        b'{"instances": [[1]]}',
    )

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"Connection: close" in head
    assert json.loads(body) == {"message": "Bad Request"}
    assert local_stack.request_counts()[400] == answered + 1


def test_bad_input_reaches_the_handler_and_gets_its_4xx(local_stack: LocalStack) -> None:
    status, body = http(local_stack, "POST", "/predict", {"instances": [[1.0, 2.0]]})

    assert status == 400
    assert "64" in body["error"]["message"]


def test_emf_lines_of_the_handler_become_cloudwatch_metrics(local_stack: LocalStack) -> None:
    predict(local_stack, [[3.0] * 64])

    metrics = local_stack.client("cloudwatch").list_metrics(
        Namespace="Truthwatch",
        MetricName="inference_latency",
        Dimensions=[{"Name": "ModelName", "Value": "digits"}],
    )["Metrics"]
    assert metrics


def test_label_upload_gives_a_report_and_quality_metrics(
    local_stack: LocalStack, heldout: tuple[np.ndarray, list[str]]
) -> None:
    rows, labels = heldout
    ids = [p["inference_id"] for p in predict(local_stack, rows[:120].tolist())]

    upload_labels(local_stack, "labels/e2e/first.csv", ids, labels[:120])

    report = wait_for(lambda: report_for(local_stack, "first.csv"), 20, "the report of labels/e2e/first.csv")
    assert report["rows"]["matched"] == 120
    assert report["quality"]["metrics"]["accuracy_score"] > 0.9

    # The stack copies the JSON and HTML reports to <state_dir>/reports/ and announces them.
    def copied() -> list[WrittenReport]:
        found = [r for r in local_stack.reports if r.label_key == "labels/e2e/first.csv"]
        return found if len(found) == 2 else []

    copies = wait_for(copied, 10, "the local copies of the report")
    assert sorted(Path(r.s3_key).suffix for r in copies) == [".html", ".json"]
    s3 = local_stack.client("s3")
    for copy in copies:
        assert copy.path == local_stack.config.state_dir / copy.s3_key
        stored = s3.get_object(Bucket=local_stack.name_of("DataBucket"), Key=copy.s3_key)["Body"].read()
        assert copy.path.read_bytes() == stored
    announced = local_stack.console.stream.getvalue()
    assert f"report on labels/e2e/first.csv: s3://{local_stack.name_of('DataBucket')}/" in announced
    accuracy = local_stack.client("cloudwatch").list_metrics(
        Namespace="Truthwatch",
        MetricName="accuracy_score",
        Dimensions=[{"Name": "ModelName", "Value": "digits"}],
    )["Metrics"]
    assert accuracy


def test_breach_emails_the_alarm_and_recovery_emails_ok(
    local_stack: LocalStack, heldout: tuple[np.ndarray, list[str]]
) -> None:
    rows, labels = heldout
    alarm = local_stack.name_of("AccuracyAlarm")
    emails_before = len(local_stack.emails)

    ids = [p["inference_id"] for p in predict(local_stack, shift_digits(rows).tolist())]
    upload_labels(local_stack, "labels/e2e/drifted.csv", ids, labels)
    report = wait_for(lambda: report_for(local_stack, "drifted.csv"), 20, "the drifted report")
    assert report["quality"]["metrics"]["accuracy_score"] < 0.9

    wait_for(lambda: alarm_state(local_stack, "AccuracyAlarm") == "ALARM", 10, f"{alarm} in ALARM")
    firing = wait_for(
        lambda: [e for e in local_stack.emails[emails_before:] if f" {alarm} " in e.subject],
        10,
        "the ALARM email",
    )
    assert firing[0].subject.startswith(f"[FIRING] {alarm} | model digits | accuracy_score 0.")
    assert firing[0].subject.endswith(" < 0.9")
    assert float(firing[0].subject.split("accuracy_score ")[1].split()[0]) < 0.9
    assert firing[0].path.suffix == ".eml"
    assert firing[0].path.parent == local_stack.config.state_dir / "outbox"

    emails_before = len(local_stack.emails)
    ids = [p["inference_id"] for p in predict(local_stack, rows.tolist())]
    upload_labels(local_stack, "labels/e2e/recovered.csv", ids, labels)
    wait_for(lambda: report_for(local_stack, "recovered.csv"), 20, "the recovery report")

    window = 24 * PERIOD_S + 10
    wait_for(lambda: alarm_state(local_stack, "AccuracyAlarm") == "OK", window, f"{alarm} back to OK")
    recovered = wait_for(
        lambda: [e for e in local_stack.emails[emails_before:] if f" {alarm} " in e.subject],
        10,
        "the OK email",
    )
    transitions = [(t.old, t.new) for t in local_stack.transitions if t.alarm == alarm]
    assert transitions[-2:] == [("OK", "ALARM"), ("ALARM", "OK")]
    assert recovered[0].subject.startswith(f"[RECOVERED] {alarm} | model digits | accuracy_score ")
    assert float(recovered[0].subject.split("accuracy_score ")[1].split(",")[0]) >= 0.9
    assert "ALARM to OK" in recovered[0].path.read_text()


def _log_lines(path: Path, skip: int) -> list[dict[str, Any]]:
    """The JSON lines of a function's log after its first ``skip`` lines."""
    lines = path.read_text(encoding="utf-8").splitlines()[skip:] if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_each_function_logs_with_its_own_service_name_and_request_id(local_stack: LocalStack) -> None:
    metrics, alarm = local_stack.functions["MetricsFunction"], local_stack.functions["AlarmFunction"]
    logged = {
        f: len(f.log_path.read_text().splitlines()) if f.log_path.exists() else 0 for f in (metrics, alarm)
    }
    labels = load_event("s3-object-created-labels")
    labels["Records"][0]["s3"]["bucket"]["name"] = local_stack.name_of("DataBucket")
    request_ids: dict[LocalFunction, set[str]] = {metrics: set(), alarm: set()}

    # Metrics, then alarm, then metrics again: the package loggers each handler configures with its
    # own Logger must not keep the other function's configuration.
    for function, event, key in (
        (metrics, labels, "labels/e2e/gone-1.csv"),
        (alarm, load_event("alarm-sns-metric"), None),
        (metrics, labels, "labels/e2e/gone-2.csv"),
    ):
        if key is not None:
            event["Records"][0]["s3"]["object"]["key"] = key
        invocation = function.invoke(event)
        assert invocation.error is None, invocation.error
        request_ids[function].add(invocation.request_id)

    # The pollers may invoke either function meanwhile (notifications of earlier tests): their
    # lines must be tagged with their own function too, so the sets are compared, not equated.
    services = {metrics: "truthwatch-metrics", alarm: "truthwatch-alarm"}
    seen: dict[LocalFunction, set[str]] = {}
    for function in (metrics, alarm):
        lines = _log_lines(function.log_path, logged[function])
        assert {line["service"] for line in lines} == {services[function]}
        assert {line["function_name"] for line in lines} == {function.spec.name}
        seen[function] = {line["function_request_id"] for line in lines}
        assert request_ids[function] <= seen[function]
    assert not seen[metrics] & seen[alarm]
    package_lines = [
        line
        for line in _log_lines(metrics.log_path, logged[metrics])
        if line.get("name", "").startswith("truthwatch.")
        and line["function_request_id"] in request_ids[metrics]
    ]
    assert {line["function_request_id"] for line in package_lines} == request_ids[metrics]


def test_the_same_bytes_uploaded_again_under_one_key_are_processed_again(
    local_stack: LocalStack, heldout: tuple[np.ndarray, list[str]]
) -> None:
    # A, then a file with a bad label (B), then A again: each upload is a new object version, so
    # each is processed, and the last word is A's (as S3's notifications carry the version id).
    rows, labels = heldout
    ids = [p["inference_id"] for p in predict(local_stack, rows[:2].tolist())]
    key = "labels/e2e/relabel-aba.csv"
    for batch in (labels[:2], ["zz", labels[1]], labels[:2]):
        upload_labels(local_stack, key, ids, batch)

    wait_for(
        lambda: len([r for r in local_stack.reports if r.label_key == key]) == 6,
        20,
        "three processings of the same key",
    )
    report = report_for(local_stack, "relabel-aba.csv")
    assert report is not None
    assert (report["rows"]["matched"], report["rows"]["rejected"]) == (2, 0)
    s3 = local_stack.client("s3")
    bucket = local_stack.name_of("DataBucket")
    rejected = s3.get_object(Bucket=bucket, Key=f"rejected/{key}.jsonl")["Body"].read()
    assert rejected == b""
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 3
