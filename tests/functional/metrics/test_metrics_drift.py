"""Drift through the metrics function on real digits: no PSI from too few rows, the right side of 0.2 else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.metrics import app
from infra.local.demo import shift_digits
from tests.events import load_event
from tests.functional.metrics.conftest import Stack, record_predictions
from truthwatch.dataset import load_digits_split

KEY = "labels/drift/digits.csv"
DRIFT = ("feature_psi_max", "prediction_psi")
THRESHOLD = 0.2
"""The template's DriftThreshold default: the alarms fire above it."""


def _published(
    stack: Stack, rows: int, shifted: bool, lambda_context: LambdaContext
) -> dict[str, list[float]]:
    """Record ``rows`` held-out digits (shifted or not), upload their labels; the drift values sent."""
    predicted_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    pixels = load_digits_split().x_heldout
    record_predictions(stack, predicted_at, rows=rows, inputs=shift_digits(pixels) if shifted else pixels)
    body = "inference_id,label\n" + "".join(
        f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"].update({"key": KEY, "eTag": stack.put_labels(KEY, body.encode())})

    [summary] = app.lambda_handler(event, lambda_context)["processed"]

    assert summary["matched"] == rows
    values: dict[str, list[float]] = {}
    for name in DRIFT:
        stats = stack.cloudwatch.get_metric_statistics(
            Namespace="Truthwatch",
            MetricName=name,
            Dimensions=[
                {"Name": "ModelName", "Value": stack.card.name},
                {"Name": "ModelVersion", "Value": stack.card.version},
            ],
            StartTime=predicted_at - timedelta(hours=1),
            EndTime=predicted_at + timedelta(hours=2),
            Period=60,
            Statistics=["Maximum"],
        )
        values[name] = [p["Maximum"] for p in stats["Datapoints"]]
    return values


def test_drift_a_healthy_file_of_60_rows_publishes_no_psi(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    assert _published(stack, 60, shifted=False, lambda_context=lambda_context) == {name: [] for name in DRIFT}


def test_drift_a_healthy_file_of_360_rows_publishes_psi_below_the_threshold(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    values = _published(stack, 360, shifted=False, lambda_context=lambda_context)

    assert [len(v) for v in values.values()] == [1, 1]
    assert all(0 <= v[0] < THRESHOLD for v in values.values()), values


@pytest.mark.parametrize("rows", [360])
def test_drift_a_shifted_file_of_360_rows_publishes_feature_psi_above_the_threshold(
    stack: Stack, lambda_context: LambdaContext, rows: int
) -> None:
    values = _published(stack, rows, shifted=True, lambda_context=lambda_context)

    assert [len(v) for v in values.values()] == [1, 1]
    assert values["feature_psi_max"][0] > THRESHOLD, values
