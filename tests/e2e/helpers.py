"""Small clients of a running local stack, shared by the e2e tests."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from infra.local.stack import LocalStack


def http(stack: LocalStack, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one request to the stack's API."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        stack.api_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def predict(stack: LocalStack, rows: list[list[float]]) -> list[dict[str, Any]]:
    """The predictions for ``rows`` (one request)."""
    status, answer = http(stack, "POST", "/predict", {"instances": rows})
    assert status == 200, answer
    predictions: list[dict[str, Any]] = answer["predictions"]
    return predictions


def upload_labels(stack: LocalStack, key: str, ids: list[str], labels: list[str]) -> None:
    """Put a CSV of ``inference_id,label`` rows into the data bucket."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["inference_id", "label"])
    writer.writerows(zip(ids, labels, strict=True))
    stack.client("s3").put_object(Bucket=stack.name_of("DataBucket"), Key=key, Body=text.getvalue().encode())


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll until ``condition()`` is truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def report_for(stack: LocalStack, label_key: str) -> dict[str, Any] | None:
    """The JSON report the metrics function wrote for ``label_key``, if any yet."""
    s3 = stack.client("s3")
    bucket = stack.name_of("DataBucket")
    stem = label_key.rsplit("/", 1)[-1]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="reports/")
    keys = [o["Key"] for o in listing.get("Contents", []) if stem in o["Key"] and o["Key"].endswith(".json")]
    if not keys:
        return None
    report: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    return report


def alarm_state(stack: LocalStack, logical_id: str) -> str:
    """The state moto holds for one alarm of the template."""
    alarms = stack.client("cloudwatch").describe_alarms(AlarmNames=[stack.name_of(logical_id)])
    return str(alarms["MetricAlarms"][0]["StateValue"])
