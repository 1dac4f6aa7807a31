"""PutMetricData entries: both dimension sets, per-call limits, the two-week window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from truthwatch.publish import (
    MAX_DATA_PER_CALL,
    MetricPoint,
    hour_start,
    metric_data,
    put_metric_data,
    split_by_age,
)

NOW = datetime(2024, 6, 20, 12, 0, tzinfo=UTC)


class FakeCloudWatch:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_publish_each_point_goes_out_under_both_dimension_sets() -> None:
    data = metric_data([MetricPoint("accuracy_score", 0.9, NOW, "digits", "0123456789ab")])

    assert [d["Dimensions"] for d in data] == [
        [{"Name": "ModelName", "Value": "digits"}, {"Name": "ModelVersion", "Value": "0123456789ab"}],
        [{"Name": "ModelName", "Value": "digits"}],
    ]
    assert {d["Unit"] for d in data} == {"None"}


def test_publish_without_a_version_uses_the_model_set_only() -> None:
    data = metric_data([MetricPoint("labels_read", 5, NOW, "digits")])

    assert [d["Dimensions"] for d in data] == [[{"Name": "ModelName", "Value": "digits"}]]
    assert data[0]["Unit"] == "Count"


def test_publish_splits_calls_at_the_limit() -> None:
    points = [MetricPoint("labels_matched", float(i), NOW, "digits", "0123456789ab") for i in range(1200)]
    client = FakeCloudWatch()

    calls = put_metric_data(client, metric_data(points))  # type: ignore[arg-type]

    assert calls == 3
    assert [len(c["MetricData"]) for c in client.calls] == [MAX_DATA_PER_CALL, MAX_DATA_PER_CALL, 400]
    assert {c["Namespace"] for c in client.calls} == {"Truthwatch"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_publish_refuses_non_finite_values(value: float) -> None:
    with pytest.raises(ValueError, match="refuses NaN"):
        MetricPoint("log_loss", value, NOW, "digits")


def test_publish_refuses_names_missing_from_telemetry() -> None:
    with pytest.raises(ValueError, match="not a metric"):
        MetricPoint("accuracy", 1.0, NOW, "digits")


def test_publish_points_older_than_two_weeks_are_held_back() -> None:
    fresh_hour = hour_start(int((NOW - timedelta(days=13)).timestamp() // 3600))
    old_hour = hour_start(int((NOW - timedelta(days=14, hours=1)).timestamp() // 3600))
    points = [MetricPoint("accuracy_score", 1.0, t, "digits") for t in (fresh_hour, old_hour)]

    fresh, stale = split_by_age(points, NOW)

    assert [p.timestamp for p in fresh] == [fresh_hour]
    assert [p.timestamp for p in stale] == [old_hour]


def test_publish_hour_start_is_utc() -> None:
    assert hour_start(476_000) == datetime(2024, 4, 20, 8, 0, tzinfo=UTC)


def test_publish_a_point_with_rows_as_a_statistic_set_weighed_by_them() -> None:
    [datum] = metric_data([MetricPoint("accuracy_score", 0.75, NOW, "digits", rows=40)])

    assert "Value" not in datum
    assert datum["StatisticValues"] == {"SampleCount": 40.0, "Sum": 30.0, "Minimum": 0.75, "Maximum": 0.75}


def test_publish_refuses_a_weight_of_no_rows() -> None:
    with pytest.raises(ValueError, match="0 rows"):
        MetricPoint("accuracy_score", 0.75, NOW, "digits", rows=0)
