"""EMF lines become datapoints the way CloudWatch Logs extracts them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from infra.local.emf import parse_emf_line


def _line(**members: object) -> str:
    body: dict[str, object] = {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Truthwatch",
                    "Dimensions": [["ModelName", "ModelVersion"], ["ModelName"]],
                    "Metrics": [{"Name": "inference_latency", "Unit": "Milliseconds"}],
                }
            ],
        },
        "ModelName": "digits",
        "ModelVersion": "abc",
    }
    body.update(members)
    return json.dumps(body)


def test_emf_metric_is_emitted_once_per_dimension_set() -> None:
    points = parse_emf_line(_line(inference_latency=2.5))

    assert points is not None
    assert [p.dimensions for p in points] == [
        (("ModelName", "digits"), ("ModelVersion", "abc")),
        (("ModelName", "digits"),),
    ]
    assert {p.value for p in points} == {2.5}
    assert points[0].unit == "Milliseconds"
    assert points[0].timestamp == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_emf_list_member_gives_one_datapoint_per_value() -> None:
    points = parse_emf_line(_line(inference_latency=[1.0, 2.0, 3.0]))

    assert points is not None
    assert sorted(p.value for p in points if len(p.dimensions) == 1) == [1.0, 2.0, 3.0]


def test_emf_non_finite_and_non_numeric_values_are_dropped() -> None:
    points = parse_emf_line(_line(inference_latency=["x", True, 4.0]))

    assert points is not None
    assert {p.value for p in points} == {4.0}


def test_log_lines_that_are_not_emf_are_not_metrics() -> None:
    assert parse_emf_line('{"level": "INFO", "message": "served"}') is None
    assert parse_emf_line("plain text") is None
    assert parse_emf_line('{"_aws": "broken"') is None
