"""Embedded metric format (EMF) lines become CloudWatch datapoints, as Lambda's log pipeline does.

In AWS, a function prints EMF JSON to stdout and CloudWatch Logs extracts the metrics. Locally the
runtime hands every line a handler prints to :func:`parse_emf_line`; the stack sends the datapoints
to moto with :func:`put_datapoints`. Only what the EMF specification defines is read:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.literals import StandardUnitType
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

logger = logging.getLogger(__name__)

# PutMetricData takes up to 1,000 datums per call:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html
PUT_BATCH = 1000


@dataclass(frozen=True)
class Datapoint:
    """One value of one metric, as an EMF line defines it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    unit: str
    timestamp: datetime

    def to_datum(self) -> MetricDatumTypeDef:
        """The PutMetricData form (the namespace goes on the call, not the datum)."""
        unit: StandardUnitType = self.unit  # type: ignore[assignment]
        return {
            "MetricName": self.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
            "Timestamp": self.timestamp,
            "Value": self.value,
            "Unit": unit,
        }


def parse_emf_line(line: str) -> list[Datapoint] | None:
    """The datapoints of one EMF log line, or ``None`` when the line is not EMF.

    Every metric of every directive is emitted once per dimension set. A metric whose member holds
    a list gives one datapoint per value; values that are not finite numbers are dropped with a
    warning, because CloudWatch refuses them.
    """
    text = line.strip()
    if not text.startswith("{") or '"_aws"' not in text:
        return None
    try:
        root = json.loads(text)
    except ValueError:
        return None
    meta = root.get("_aws") if isinstance(root, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("CloudWatchMetrics"), list):
        return None

    timestamp = _timestamp(meta.get("Timestamp"))
    points: list[Datapoint] = []
    for directive in meta["CloudWatchMetrics"]:
        points.extend(_directive_points(root, directive, timestamp))
    return points


def put_datapoints(client: CloudWatchClient, points: Sequence[Datapoint]) -> int:
    """Send datapoints with PutMetricData, grouped by namespace; returns how many were sent."""
    by_namespace: dict[str, list[MetricDatumTypeDef]] = {}
    for point in points:
        by_namespace.setdefault(point.namespace, []).append(point.to_datum())

    for namespace, items in by_namespace.items():
        for start in range(0, len(items), PUT_BATCH):
            client.put_metric_data(Namespace=namespace, MetricData=items[start : start + PUT_BATCH])
    return len(points)


def _directive_points(root: dict[str, Any], directive: Any, timestamp: datetime) -> list[Datapoint]:
    if not isinstance(directive, dict):
        return []
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not namespace:
        return []

    points: list[Datapoint] = []
    for dimension_set in directive.get("Dimensions") or [[]]:
        dimensions = tuple((name, str(root[name])) for name in dimension_set if name in root)
        if len(dimensions) != len(dimension_set):
            logger.warning("EMF dimension missing from the line", extra={"namespace": namespace})
            continue
        for metric in directive.get("Metrics", []):
            points.extend(_metric_points(root, metric, namespace, dimensions, timestamp))
    return points


def _metric_points(
    root: dict[str, Any],
    metric: Any,
    namespace: str,
    dimensions: tuple[tuple[str, str], ...],
    timestamp: datetime,
) -> list[Datapoint]:
    name = metric.get("Name") if isinstance(metric, dict) else None
    if not isinstance(name, str) or name not in root:
        return []
    raw = root[name]
    values = raw if isinstance(raw, list) else [raw]
    unit = str(metric.get("Unit", "None"))

    points: list[Datapoint] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            logger.warning("EMF value is not a finite number", extra={"metric": name})
            continue
        points.append(Datapoint(namespace, name, dimensions, float(value), unit, timestamp))
    return points


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.now(tz=UTC)
