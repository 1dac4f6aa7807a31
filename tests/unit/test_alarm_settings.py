"""Alarm function settings and the datapoints fetch, without AWS (botocore's Stubber)."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from tests.events import load_event
from truthwatch.alarms import AlarmChange, parse_event
from truthwatch.notify import AlarmSettings, ConfigurationError, fetch_recent, parse_recipients

ENV = {
    "ALERT_EMAIL": "oncall@example.com",
    "SENDER_EMAIL": "truthwatch@alerts.example.com",
    "IDEMPOTENCY_TABLE": "table",
    "DATA_BUCKET": "bucket",
}


def _change(name: str) -> AlarmChange:
    (item,) = parse_event(load_event(name))
    assert isinstance(item, AlarmChange)
    return item


def test_recipients_split_trimmed_and_deduplicated() -> None:
    assert parse_recipients(" a@example.com,b@example.org , A@example.com,,") == (
        "a@example.com",
        "b@example.org",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no email address"),
        ("oncall", "'oncall', which is not an email address"),
        ("Ops <ops@example.com>", "not an email address"),
        (",".join(f"p{i}@example.com" for i in range(51)), "lists 51 addresses"),
    ],
)
def test_bad_recipients_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_recipients(text)


def test_settings_from_env() -> None:
    settings = AlarmSettings.from_env({**ENV, "DASHBOARD_NAME": " truthwatch "})

    assert settings.recipients == ("oncall@example.com",)
    assert settings.dashboard_name == "truthwatch"
    assert settings.data_bucket == "bucket"


def test_links_settings_are_optional() -> None:
    settings = AlarmSettings.from_env({k: v for k, v in ENV.items() if k != "DATA_BUCKET"})

    assert (settings.data_bucket, settings.dashboard_name) == (None, None)


@pytest.mark.parametrize("name", ["ALERT_EMAIL", "SENDER_EMAIL", "IDEMPOTENCY_TABLE"])
def test_missing_setting_is_named(name: str) -> None:
    env = {k: v for k, v in ENV.items() if k != name}

    with pytest.raises(ConfigurationError, match=f"{name} is required"):
        AlarmSettings.from_env(env)


def test_fetch_failure_becomes_a_problem_not_an_exception() -> None:
    cloudwatch = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(cloudwatch) as stub:
        stub.add_client_error("get_metric_data", service_error_code="Throttling", http_status_code=400)

        recent = fetch_recent(cloudwatch, _change("alarm-sns-metric"))

    assert recent.series == ()
    assert recent.problem == "could not be read (Throttling)"


def test_fetch_asks_for_whole_periods_ending_after_the_change() -> None:
    cloudwatch = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    expected = {
        "MetricDataQueries": [
            {
                "Id": "q0",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "Truthwatch",
                        "MetricName": "feature_psi_max",
                        "Dimensions": [{"Name": "ModelName", "Value": "digits"}],
                    },
                    "Period": 3600,
                    "Stat": "Maximum",
                },
                "ReturnData": True,
            }
        ],
        "StartTime": datetime(2024, 6, 2, 13, 0, tzinfo=UTC),
        "EndTime": datetime(2024, 6, 3, 13, 0, tzinfo=UTC),
        "ScanBy": "TimestampDescending",
    }
    reply = {
        "MetricDataResults": [
            {
                "Id": "q0",
                "Timestamps": [datetime(2024, 6, 3, 11, tzinfo=UTC), datetime(2024, 6, 3, 10, tzinfo=UTC)],
                "Values": [0.3172, float("inf")],
                "StatusCode": "Complete",
            }
        ]
    }
    with Stubber(cloudwatch) as stub:
        stub.add_response("get_metric_data", reply, expected)

        recent = fetch_recent(cloudwatch, _change("alarm-lambda-metric"))

    (series,) = recent.series
    assert series.title == "feature_psi_max"
    assert [(p.timestamp.hour, p.value) for p in series.points] == [(11, 0.3172)]  # infinity dropped


def test_composite_alarm_fetches_nothing() -> None:
    cloudwatch = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(cloudwatch) as stub:
        recent = fetch_recent(cloudwatch, _change("alarm-lambda-composite"))
        stub.assert_no_pending_responses()

    assert recent.series == () and "composite" in recent.problem
