"""Publish the metrics function's values to CloudWatch with PutMetricData.

Each value goes out as two data points, one per dimension set of the contract: ``(ModelName,
ModelVersion)`` for graphs per version and ``(ModelName)`` for the alarms. A point that carries
the rows it was measured on goes out as a statistic set (``SampleCount`` = rows, ``Sum`` = value x
rows), so CloudWatch's ``Average`` over an hour weighs each label file and each model version by
its rows: for accuracy that is the accuracy of all the hour's rows together, whatever files or
versions they came in. Quality and drift values are timestamped at the start of the UTC hour their
predictions were made in, so late labels land where the predictions happened. CloudWatch takes
timestamps up to two weeks in the past
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html); older
points are not sent, and the report lists them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from truthwatch import telemetry

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

logger = logging.getLogger(__name__)

MAX_DATA_PER_CALL = 1000
"""PutMetricData takes up to 1,000 metric data per call (and 1 MB; 1,000 of ours are ~250 kB)."""

MAX_AGE = timedelta(days=14)
AGE_MARGIN = timedelta(minutes=15)
"""Kept from the two-week limit, so a point does not age out between this check and the call."""


@dataclass(frozen=True)
class MetricPoint:
    """One value of one metric for one model version at one time.

    ``rows``, when given, is how many rows the value was measured on; the point is then published
    as a statistic set that weighs it by them.
    """

    name: str
    value: float
    timestamp: datetime
    model_name: str
    model_version: str | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.name not in telemetry.BY_NAME:
            raise ValueError(f"{self.name!r} is not a metric in truthwatch.telemetry")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.name} is {self.value}; CloudWatch refuses NaN and infinity")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"{self.name} is weighted by {self.rows} rows; a weight needs one row or more")


def hour_start(epoch_hour: int) -> datetime:
    """The UTC start of an epoch hour (hours since 1970-01-01T00:00Z)."""
    return datetime.fromtimestamp(epoch_hour * 3600, tz=UTC)


def split_by_age(points: Iterable[MetricPoint], now: datetime) -> tuple[list[MetricPoint], list[MetricPoint]]:
    """Separate the points CloudWatch still accepts from those older than two weeks."""
    cutoff = now - MAX_AGE + AGE_MARGIN
    fresh: list[MetricPoint] = []
    stale: list[MetricPoint] = []
    for point in points:
        (fresh if point.timestamp >= cutoff else stale).append(point)
    return fresh, stale


def metric_data(points: Iterable[MetricPoint]) -> list[MetricDatumTypeDef]:
    """The PutMetricData entries: each point under both dimension sets of the contract."""
    data: list[MetricDatumTypeDef] = []
    for point in points:
        spec = telemetry.BY_NAME[point.name]
        name_dimension = {"Name": telemetry.MODEL_NAME_DIMENSION, "Value": point.model_name}
        dimension_sets = [[name_dimension]]
        if point.model_version is not None:
            version_dimension = {"Name": telemetry.MODEL_VERSION_DIMENSION, "Value": point.model_version}
            dimension_sets.insert(0, [name_dimension, version_dimension])
        for dimensions in dimension_sets:
            datum: MetricDatumTypeDef = {
                "MetricName": spec.name,
                "Dimensions": dimensions,  # type: ignore[typeddict-item]
                "Timestamp": point.timestamp,
                "Unit": spec.unit,
            }
            if point.rows is None:
                datum["Value"] = float(point.value)
            else:
                value = float(point.value)
                datum["StatisticValues"] = {
                    "SampleCount": float(point.rows),
                    "Sum": value * point.rows,
                    "Minimum": value,
                    "Maximum": value,
                }
            data.append(datum)
    return data


def put_metric_data(
    client: CloudWatchClient, data: Sequence[MetricDatumTypeDef], namespace: str = telemetry.NAMESPACE
) -> int:
    """Send ``data`` in calls of at most :data:`MAX_DATA_PER_CALL` entries; return the number of calls."""
    calls = 0
    for start in range(0, len(data), MAX_DATA_PER_CALL):
        client.put_metric_data(Namespace=namespace, MetricData=list(data[start : start + MAX_DATA_PER_CALL]))
        calls += 1
    logger.debug("put %d metric data in %d calls", len(data), calls)
    return calls
