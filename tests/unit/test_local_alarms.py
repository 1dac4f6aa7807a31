"""The local alarm evaluator: statistics, comparison, datapoints to alarm and missing data."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from infra.local.alarms import AlarmRule, Evaluation, Sample, evaluate, notification, statistic
from truthwatch.alarms import AlarmChange, parse_event

RULE = AlarmRule(
    name="truthwatch-digits-accuracy",
    arn="arn:aws:cloudwatch:us-east-1:123456789012:alarm:truthwatch-digits-accuracy",
    description="accuracy fell",
    namespace="Truthwatch",
    metric_name="accuracy_score",
    dimensions=(("ModelName", "digits"),),
    statistic="Average",
    period=3600,
    evaluation_periods=3,
    datapoints_to_alarm=2,
    comparison="LessThanThreshold",
    threshold=0.9,
    treat_missing_data="notBreaching",
    alarm_actions=("arn:aws:sns:us-east-1:123456789012:topic",),
)


def test_statistics_over_values_and_statistic_sets() -> None:
    samples = [Sample.of(1.0), Sample.of(3.0), Sample(2.0, 10.0, 4.0, 6.0)]

    assert statistic(samples, "SampleCount") == 4.0
    assert statistic(samples, "Sum") == 14.0
    assert statistic(samples, "Average") == 3.5
    assert statistic(samples, "Minimum") == 1.0
    assert statistic(samples, "Maximum") == 6.0
    assert statistic([Sample.of(float(v)) for v in range(1, 101)], "p99") == 99.0
    assert statistic([], "Average") is None


def test_unknown_statistic_is_refused() -> None:
    with pytest.raises(ValueError, match="statistic"):
        statistic([Sample.of(1.0)], "Median")


def test_alarm_needs_datapoints_to_alarm_breaching_periods() -> None:
    assert evaluate(RULE, [0.95, 0.5, 0.95], "OK").state == "OK"
    assert evaluate(RULE, [0.5, 0.95, 0.4], "OK").state == "ALARM"


def test_missing_periods_follow_the_treatment() -> None:
    assert evaluate(RULE, [None, None, None], "ALARM").state == "OK"
    assert evaluate(replace(RULE, treat_missing_data="breaching"), [None, None, 0.95], "OK").state == "ALARM"
    assert (
        evaluate(replace(RULE, treat_missing_data="missing"), [None, None, None], "OK").state
        == "INSUFFICIENT_DATA"
    )
    assert evaluate(replace(RULE, treat_missing_data="ignore"), [None, None, None], "ALARM").state == "ALARM"
    single = replace(RULE, treat_missing_data="missing", datapoints_to_alarm=1)
    assert evaluate(single, [None, 0.5, None], "OK").state == "ALARM"


def test_reason_names_the_datapoints_and_the_threshold() -> None:
    outcome = evaluate(RULE, [0.5, 0.4, 0.95], "OK")

    assert outcome.reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [0.5, 0.4, 0.95]")
    assert "less than the threshold (0.9)" in outcome.reason


def test_reason_counts_only_the_periods_the_treatment_judges() -> None:
    ignored = evaluate(replace(RULE, treat_missing_data="missing"), [0.95, None, 0.97], "ALARM")
    judged = evaluate(RULE, [0.95, None, 0.97], "ALARM")

    assert ignored.reason.startswith("Threshold Crossed: 2 out of the last 2 datapoints")
    assert judged.reason.startswith("Threshold Crossed: 3 out of the last 3 datapoints")


def test_reason_dates_the_datapoints_newest_first_as_cloudwatch_does() -> None:
    starts = [datetime(2024, 6, 3, 11, minute, tzinfo=UTC) for minute in (0, 1, 2)]

    outcome = evaluate(RULE, [0.5, None, 0.95], "ALARM", starts)
    _, message = notification(RULE, outcome, "ALARM", "123456789012", "US East (N. Virginia)", starts[2])
    sns = {"Type": "Notification", "MessageId": "m-1", "TopicArn": RULE.alarm_actions[0]}
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {**sns, "Message": json.dumps(message)}}]}
    change = parse_event(event)[0]

    assert "[0.95 (03/06/24 11:02:00), 0.5 (03/06/24 11:00:00)]" in outcome.reason
    assert isinstance(change, AlarmChange)
    assert change.latest_value == 0.95
    assert change.evaluated[0].timestamp == starts[2]


def test_notification_has_the_shape_cloudwatch_publishes_to_sns() -> None:
    outcome = Evaluation("ALARM", "Threshold Crossed", (0.5,))
    moment = datetime(2024, 6, 3, 11, 5, 12, 345000, tzinfo=UTC)

    subject, message = notification(RULE, outcome, "OK", "123456789012", "US East (N. Virginia)", moment)

    assert subject == 'ALARM: "truthwatch-digits-accuracy" in US East (N. Virginia)'
    assert message["StateChangeTime"] == "2024-06-03T11:05:12.345+0000"
    assert message["Trigger"]["Statistic"] == "AVERAGE"
    assert message["Trigger"]["Dimensions"] == [{"value": "digits", "name": "ModelName"}]
    assert json.loads(json.dumps(message)) == message


def test_rule_from_a_metric_math_alarm_is_refused() -> None:
    described = {"AlarmName": "math", "Metrics": [{"Id": "e1", "Expression": "m1+m2"}]}

    with pytest.raises(ValueError, match="metric math"):
        AlarmRule.from_alarm(described)  # type: ignore[arg-type]
