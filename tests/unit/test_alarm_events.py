"""Reading alarm inputs: every accepted shape becomes the same AlarmChange, or a Notice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.events import load_event
from truthwatch.alarms import (
    AlarmChange,
    AlarmEventError,
    Notice,
    parse_event,
    parse_time,
    region_code,
    region_from_arn,
    transition,
)


def _one(event: dict[str, Any]) -> AlarmChange:
    (item,) = parse_event(event)
    assert isinstance(item, AlarmChange)
    return item


def _sns_message(event: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(event["Records"][0]["Sns"]["Message"])
    return message


def _with_message(event: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("OK", "ALARM", "firing"),
        ("INSUFFICIENT_DATA", "ALARM", "firing"),
        ("ALARM", "OK", "recovered"),
        ("ALARM", "INSUFFICIENT_DATA", "no data"),
        ("OK", "INSUFFICIENT_DATA", "no data"),
        ("INSUFFICIENT_DATA", "OK", "ok"),
    ],
)
def test_transition_names(old: str, new: str, expected: str) -> None:
    assert transition(old, new) == expected


def test_sns_single_metric_alarm() -> None:
    change = _one(load_event("alarm-sns-metric"))

    assert change.source == "sns"
    assert change.region == "eu-west-1"
    assert change.account_id == "123456789012"
    assert (change.old_state, change.new_state, change.transition) == ("OK", "ALARM", "firing")
    assert change.changed_at == datetime(2024, 6, 3, 11, 5, 12, 345000, tzinfo=UTC)
    assert change.threshold == 0.9
    assert change.comparison == "LessThanThreshold"
    assert change.model_name == "digits" and change.model_version is None
    (query,) = change.queries
    assert (query.namespace, query.metric_name, query.stat, query.period) == (
        "Truthwatch",
        "accuracy_score",
        "Average",
        3600,
    )
    assert change.latest_value == 0.8125
    assert change.evaluated[0].timestamp == datetime(2024, 6, 3, 10, 0, tzinfo=UTC)


def test_sns_metric_math_alarm_watches_the_returned_expression() -> None:
    change = _one(load_event("alarm-sns-metric-math"))

    assert [q.id for q in change.queries] == ["errors", "api5xx", "fnerrors"]
    assert change.watched is not None and change.watched.id == "errors"
    assert change.watched.title == "server errors"
    assert change.threshold == 0.0
    assert change.model_name is None


def test_sns_anomaly_alarm_has_a_band_and_no_threshold() -> None:
    change = _one(load_event("alarm-sns-anomaly"))

    assert change.threshold is None
    assert change.is_anomaly_band
    assert change.band == (61.2, 240.5)
    assert change.watched is not None and change.watched.id == "m1"
    assert [p.value for p in change.evaluated] == [412.0, 388.0, 365.0]


def test_extended_statistic_is_kept_for_percentile_alarms() -> None:
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    message["Trigger"].update(
        {"StatisticType": "ExtendedStatistic", "Statistic": None, "ExtendedStatistic": "p99"}
    )

    change = _one(_with_message(event, message))

    assert change.queries[0].stat == "p99"


def test_direct_alarm_action_reads_threshold_from_reason_data() -> None:
    event = load_event("alarm-lambda-metric")
    reason_data = json.loads(event["alarmData"]["state"]["reasonData"])
    reason_data["threshold"] = 0.25
    event["alarmData"]["state"]["reasonData"] = json.dumps(reason_data)

    change = _one(event)

    assert change.source == "lambda"
    assert change.threshold == 0.25  # reasonData wins over the reason's wording
    assert change.comparison == "GreaterThanThreshold"
    assert change.latest_value == 0.3172


def test_composite_alarm_action() -> None:
    change = _one(load_event("alarm-lambda-composite"))

    assert change.is_composite
    assert change.queries == ()
    assert change.triggering_alarms == (
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:truthwatch-digits-accuracy",
    )


def test_eventbridge_state_change() -> None:
    change = _one(load_event("alarm-eventbridge-state-change"))

    assert change.source == "eventbridge"
    assert change.transition == "recovered"
    assert change.alarm_arn.endswith(":alarm:truthwatch-digits-prediction-drift")


def test_same_change_has_the_same_key_whatever_the_shape() -> None:
    bridge = load_event("alarm-eventbridge-state-change")
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    message.update(
        AlarmName="truthwatch-digits-prediction-drift",
        AlarmArn=bridge["resources"][0],
        OldStateValue="ALARM",
        NewStateValue="OK",
        StateChangeTime=bridge["detail"]["state"]["timestamp"],
    )

    assert _one(_with_message(event, message)).idempotency_key == _one(bridge).idempotency_key


def test_region_comes_from_the_arn_not_the_display_name() -> None:
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    message["Region"] = "US East (N. Virginia)"

    assert _one(_with_message(event, message)).region == "eu-west-1"


def test_region_display_name_is_looked_up_when_the_arn_is_missing() -> None:
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    del message["AlarmArn"]
    message["Region"] = "US East (N. Virginia)"

    change = _one(_with_message(event, message))

    assert change.region == "us-east-1"
    assert change.idempotency_key["alarm"] == "truthwatch-digits-accuracy"


def test_region_helpers() -> None:
    assert region_from_arn("arn:aws:cloudwatch:ap-southeast-2:111122223333:alarm:a:b") == "ap-southeast-2"
    assert region_from_arn("arn:aws:sns:eu-west-1:111122223333:topic") is None
    assert region_code("EU (Ireland)") == "eu-west-1"
    assert region_code("Atlantis") is None


@pytest.mark.parametrize(
    "text",
    ["2024-06-03T11:05:12.345+0000", "2024-06-03T11:05:12.345Z", "2024-06-03T13:05:12.345+02:00"],
)
def test_parse_time_spellings(text: str) -> None:
    assert parse_time(text) == datetime(2024, 6, 3, 11, 5, 12, 345000, tzinfo=UTC)


def test_non_json_sns_message_is_a_notice() -> None:
    (item,) = parse_event(load_event("alarm-sns-notice"))

    assert isinstance(item, Notice)
    assert item.subject == "truthwatch deployment"
    assert item.region == "eu-west-1"
    assert item.idempotency_key == {"sns_message": "9a8b7c6d-5e4f-5a3b-2c1d-0e9f8a7b6c5d"}


def test_json_sns_message_that_is_not_an_alarm_is_a_notice() -> None:
    event = _with_message(load_event("alarm-sns-notice"), {"deployment": "done", "version": 14})

    (item,) = parse_event(event)

    assert isinstance(item, Notice) and item.note == ""
    assert json.loads(item.message) == {"deployment": "done", "version": 14}


def test_alarm_like_message_with_bad_time_is_a_notice_with_the_reason() -> None:
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    message["StateChangeTime"] = "yesterday"

    (item,) = parse_event(_with_message(event, message))

    assert isinstance(item, Notice)
    assert "Invalid isoformat string: 'yesterday'" in item.note


def test_non_finite_threshold_is_treated_as_absent() -> None:
    event = load_event("alarm-sns-metric")
    message = _sns_message(event)
    message["Trigger"]["Threshold"] = "NaN"
    message["NewStateReason"] = "Threshold Crossed: no datapoints were received."

    assert _one(_with_message(event, message)).threshold is None


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Records": []},
        {"Records": [{"s3": {}}]},
        {"source": "aws.cloudwatch"},
        {"detail-type": "x", "detail": {}},
    ],
)
def test_unknown_shapes_raise_with_the_keys_received(event: dict[str, Any]) -> None:
    with pytest.raises(AlarmEventError, match="received an object with keys"):
        parse_event(event)


def test_event_that_is_not_an_object_raises() -> None:
    with pytest.raises(AlarmEventError, match="received list"):
        parse_event([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"AlarmName": "x", "NewStateValue": "ALARM", "Trigger": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_sns_message_nested_too_deeply_is_a_notice_not_an_error(message: str) -> None:
    event = load_event("alarm-sns-notice")
    event["Records"][0]["Sns"]["Message"] = message

    (item,) = parse_event(event)

    assert isinstance(item, Notice) and item.message == message
