"""Fixtures for the metrics function against moto: the data bucket, both tables, CloudWatch.

Predictions are recorded the way the inference function records them: held-out digits, inputs
binned with the exported model's card, items written through ``PredictionRecord.to_item``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import numpy.typing as npt
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from functions.metrics import app
from tests.functional.support import make_context, use_fake_aws
from truthwatch.card import ModelCard
from truthwatch.dataset import load_digits_split
from truthwatch.records import PredictionRecord, encode_inputs, expiry
from truthwatch.training import ExportResult, TrainConfig, train_and_export

REGION = "eu-west-1"
BUCKET = "truthwatch-data-123456789012"
PREDICTIONS = "truthwatch-predictions"
IDEMPOTENCY = "truthwatch-idempotency"


@dataclass
class Stack:
    """moto clients and what was recorded."""

    s3: Any
    dynamodb: Any
    cloudwatch: Any
    card: ModelCard
    ids: list[str] = field(default_factory=list)
    y_true: list[int] = field(default_factory=list)
    y_pred: list[int] = field(default_factory=list)

    def put_labels(self, key: str, body: bytes) -> str:
        """Upload a label file; return its ETag without quotes."""
        response = self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return str(response["ETag"]).strip('"')

    def metric_sum(self, name: str, start: datetime, end: datetime, version: bool = True) -> float:
        """Sum of a metric's data points under the per-version dimension set (or any set naming the model).

        moto matches dimensions as a subset, unlike CloudWatch, so ``version=False`` also counts the
        per-version points; :meth:`dimension_sets` tells the sets apart.
        """
        dimensions = [{"Name": "ModelName", "Value": self.card.name}]
        if version:
            dimensions.append({"Name": "ModelVersion", "Value": self.card.version})
        stats = self.cloudwatch.get_metric_statistics(
            Namespace="Truthwatch",
            MetricName=name,
            Dimensions=dimensions,
            StartTime=start,
            EndTime=end,
            Period=3600,
            Statistics=["Sum", "SampleCount"],
        )
        return float(sum(p["Sum"] for p in stats["Datapoints"]))

    def metric_average(self, name: str, start: datetime, end: datetime) -> float:
        """CloudWatch's Average of a metric over ``start``..``end``, by model name (the alarms' series)."""
        stats = self.cloudwatch.get_metric_statistics(
            Namespace="Truthwatch",
            MetricName=name,
            Dimensions=[{"Name": "ModelName", "Value": self.card.name}],
            StartTime=start,
            EndTime=end,
            Period=int((end - start).total_seconds()),
            Statistics=["Average"],
        )
        [point] = stats["Datapoints"]
        return float(point["Average"])

    def dimension_sets(self, name: str) -> set[tuple[str, ...]]:
        """The dimension names of every series of a metric."""
        listed = self.cloudwatch.list_metrics(Namespace="Truthwatch", MetricName=name)["Metrics"]
        return {tuple(sorted(d["Name"] for d in m["Dimensions"])) for m in listed}


@pytest.fixture
def lambda_context() -> LambdaContext:
    return make_context("truthwatch-MetricsFunction", REGION, memory_mb=1769, remaining_ms=300_000)


def record_predictions(
    stack: Stack,
    predicted_at: datetime,
    rows: int = 300,
    *,
    card: ModelCard | None = None,
    wrong_every: int = 8,
    first_id: int = 0,
    inputs: npt.NDArray[np.float32] | None = None,
) -> None:
    """Record ``rows`` held-out digits as predictions of ``card`` (the stack's by default).

    One row in ``wrong_every`` is predicted wrong; ids are numbered from ``first_id``. ``inputs``
    replaces the held-out pixels that are captured (for drift), row for row.
    """
    card = card or stack.card
    split = load_digits_split()
    x = (split.x_heldout if inputs is None else inputs)[:rows]
    y = split.y_heldout[:rows]
    wrong = (np.arange(rows) % wrong_every) == 3 % wrong_every
    y_pred = np.where(wrong, (y + 1) % 10, y)
    inputs = encode_inputs(x, "binned", card)
    table = boto3.resource("dynamodb", region_name=REGION).Table(PREDICTIONS)
    with table.batch_writer() as writer:
        for i in range(rows):
            probabilities = np.full(10, 0.02)
            probabilities[y_pred[i]] = 0.82
            record = PredictionRecord(
                inference_id=f"0190a1b2-0000-7000-8000-{first_id + i:012d}",
                model_name=card.name,
                model_version=card.version,
                predicted_at=predicted_at + timedelta(seconds=i),
                label=card.class_names[int(y_pred[i])],
                label_index=int(y_pred[i]),
                confidence=0.82,
                probabilities=tuple(float(p) for p in probabilities),
                inputs_mode="binned",
                inputs=inputs[i],
                expires_at=expiry(predicted_at, 30),
            )
            writer.put_item(Item=record.to_item())
            stack.ids.append(record.inference_id)
            stack.y_true.append(int(y[i]))
            stack.y_pred.append(int(y_pred[i]))


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory, exported_model: ExportResult) -> ExportResult:
    """Another version of the digits model (another seed, two epochs), exported after the first."""
    return train_and_export(tmp_path_factory.mktemp("second-model"), TrainConfig(epochs=2, seed=7))


def upload_card(stack: Stack, card: ModelCard) -> None:
    """Put a model card where the inference function uploads it: models/<name>/<version>/model.json."""
    stack.s3.put_object(
        Bucket=BUCKET, Key=f"models/{card.name}/{card.version}/model.json", Body=card.to_json().encode()
    )


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, exported_model: ExportResult) -> Iterator[Stack]:
    """moto with the bucket, both tables and the model card, and the metrics function's environment."""
    use_fake_aws(
        monkeypatch,
        REGION,
        {
            "PREDICTIONS_TABLE": PREDICTIONS,
            "DATA_BUCKET": BUCKET,
            "IDEMPOTENCY_TABLE": IDEMPOTENCY,
            "POWERTOOLS_SERVICE_NAME": "truthwatch-metrics",
        },
    )

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for table, key, ttl in (
            (PREDICTIONS, "inference_id", "expires_at"),
            (IDEMPOTENCY, "id", "expiration"),
        ):
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            dynamodb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )
        card = exported_model.card
        s3.put_object(
            Bucket=BUCKET, Key=f"models/{card.name}/{card.version}/model.json", Body=card.to_json().encode()
        )
        app.service.cache_clear()
        yield Stack(
            s3=s3, dynamodb=dynamodb, cloudwatch=boto3.client("cloudwatch", region_name=REGION), card=card
        )
        app.service.cache_clear()


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)
