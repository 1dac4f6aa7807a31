"""The alarm function against moto SES v2, CloudWatch and DynamoDB: the email itself, per input shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.alarm import app
from tests.events import load_event
from tests.functional.alarm.conftest import BUCKET, DASHBOARD, SENDER
from tests.functional.alarm.mail import SentEmail, put_points, sent_emails
from truthwatch.alarms import AlarmEventError
from truthwatch.notify import DeliveryError

ALARM_LINK = (
    "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
    "#alarmsV2:alarm/truthwatch-digits-accuracy"
)
DASHBOARD_LINK = f"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/{DASHBOARD}"
REPORTS_LINK = f"https://s3.console.aws.amazon.com/s3/buckets/{BUCKET}?region=eu-west-1&prefix=reports%2F&showversions=false"


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 6, 3, hour, minute, tzinfo=UTC)


def _sns_alarm(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(changes)
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


def _only_email() -> SentEmail:
    emails = sent_emails()
    assert len(emails) == 1, [e.subject for e in emails]
    return emails[0]


def _seed_accuracy(cloudwatch: Any) -> None:
    put_points(
        cloudwatch,
        "Truthwatch",
        "accuracy_score",
        {"ModelName": "digits"},
        [(_at(8), 0.9531), (_at(9), 0.9412), (_at(10), 0.8125)],
    )


def test_sns_metric_alarm_firing_email_names_value_threshold_and_links(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    _seed_accuracy(aws["cloudwatch"])

    outcome = app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)

    assert outcome == {"received": 1, "sent": 1, "duplicates": 0}
    mail = _only_email()
    assert mail.subject == "[FIRING] truthwatch-digits-accuracy | model digits | accuracy_score 0.8125 < 0.9"
    assert mail.sender == SENDER
    assert mail.destinations == ["oncall@example.com", "ml-team@example.org"]
    assert mail.headers["To"] == "oncall@example.com, ml-team@example.org"
    assert mail.headers["X-Truthwatch-State"] == "ALARM (firing)"

    assert "Value:           0.8125 at 2024-06-03 10:00 UTC" in mail.text
    assert "Alarm when:      < 0.9 in 1 of 1 periods (missing data: notBreaching)" in mail.text
    assert "Changed:         OK to ALARM at 2024-06-03 11:05:12 UTC" in mail.text
    assert "Model:           digits, all versions" in mail.text
    assert "First check the latest report" in mail.text
    # The table: newest first, the crossing value starred, the healthy ones not.
    assert "  2024-06-03 10:00  0.8125*" in mail.text
    assert "  2024-06-03 09:00  0.9412" in mail.text
    assert "0.9412*" not in mail.text
    assert mail.text.index("2024-06-03 10:00  0.8125") < mail.text.index("2024-06-03 08:00  0.9531")

    for link in (ALARM_LINK, DASHBOARD_LINK, REPORTS_LINK):
        assert link in mail.text
        assert link.replace("&", "&amp;") in mail.html
    assert "EU (Ireland)" not in mail.text

    assert "<td align='right' style='color:#b42318;font-weight:bold'>0.8125</td>" in mail.html
    assert "<td align='right'>0.9412</td>" in mail.html


def test_sns_metric_alarm_recovered_reads_recovered_with_threshold(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    event = _sns_alarm(
        load_event("alarm-sns-metric"),
        OldStateValue="ALARM",
        NewStateValue="OK",
        NewStateReason=(
            "Threshold Crossed: 1 out of the last 1 datapoints [0.9467 (03/06/24 12:00:00)] was not less "
            "than the threshold (0.9) (minimum 1 datapoint for ALARM -> OK transition)."
        ),
        StateChangeTime="2024-06-03T13:04:55.010+0000",
    )

    app.lambda_handler(event, lambda_context)

    mail = _only_email()
    assert mail.subject == (
        "[RECOVERED] truthwatch-digits-accuracy | model digits | accuracy_score 0.9467, alarm when < 0.9"
    )
    assert mail.text.startswith("RECOVERED: truthwatch-digits-accuracy\n")
    assert "Changed:         ALARM to OK at 2024-06-03 13:04:55 UTC" in mail.text
    assert "resolved" not in mail.text.lower()


@pytest.mark.parametrize("old_state", ["ALARM", "OK"])
def test_transition_to_insufficient_data_reads_no_data_never_resolved(
    aws: dict[str, Any], lambda_context: LambdaContext, old_state: str
) -> None:
    event = _sns_alarm(
        load_event("alarm-sns-metric"),
        OldStateValue=old_state,
        NewStateValue="INSUFFICIENT_DATA",
        NewStateReason=(
            "Insufficient Data: 1 datapoint was unknown. (minimum 1 datapoint for "
            f"{old_state} -> INSUFFICIENT_DATA transition)."
        ),
        StateChangeTime="2024-06-03T15:04:55.010+0000",
    )

    app.lambda_handler(event, lambda_context)

    mail = _only_email()
    assert mail.subject == (
        "[NO DATA] truthwatch-digits-accuracy | model digits | accuracy_score no data, alarm when < 0.9"
    )
    assert "This is not a recovery" in mail.text
    for word in ("resolved", "recovered"):
        assert word not in mail.subject.lower()
        assert word not in mail.text.lower()
    assert "Recent datapoints: none in the window." in mail.text


def test_metric_math_alarm_shows_expression_and_its_inputs(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    put_points(
        aws["cloudwatch"], "AWS/ApiGateway", "5XXError", {"ApiName": "truthwatch"}, [(_at(14, 25), 3.0)]
    )
    put_points(
        aws["cloudwatch"],
        "AWS/Lambda",
        "Errors",
        {"FunctionName": "truthwatch-InferenceFunction-4H5J6K7L8M9N"},
        [(_at(14, 25), 4.0), (_at(14, 20), 1.0)],
    )

    app.lambda_handler(load_event("alarm-sns-metric-math"), lambda_context)

    mail = _only_email()
    assert mail.subject == "[FIRING] truthwatch-inference-errors | server errors 7 > 0"
    assert "Metric:          server errors = FILL(api5xx, 0) + FILL(fnerrors, 0)" in mail.text
    assert "Value:           7 at 2024-06-03 14:25 UTC" in mail.text
    header = next(line for line in mail.text.splitlines() if line.startswith("  time (UTC)"))
    assert header.split() == ["time", "(UTC)", "server", "errors", "5XXError", "Errors"]
    assert "  2024-06-03 14:25  -" in mail.text  # moto evaluates no math; the inputs still show
    row = next(line for line in mail.text.splitlines() if line.startswith("  2024-06-03 14:25"))
    assert row.split()[-2:] == ["3", "4"]
    assert "<th align='right'>5XXError</th>" in mail.html


def test_anomaly_band_alarm_reads_the_band_not_a_threshold(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    put_points(
        aws["cloudwatch"],
        "Truthwatch",
        "inference_rows",
        {"ModelName": "digits"},
        [(_at(16, 0), 365.0), (_at(16, 5), 388.0), (_at(16, 10), 412.0)],
    )

    app.lambda_handler(load_event("alarm-sns-anomaly"), lambda_context)

    mail = _only_email()
    assert mail.subject == (
        "[FIRING] truthwatch-digits-request-rate-anomaly | model digits | "
        "inference_rows 412 outside the band 61.2 .. 240.5"
    )
    assert (
        "Alarm when:      outside the band 61.2 .. 240.5 in 3 of 3 periods (missing data: missing)"
        in mail.text
    )
    assert "Metric:          Truthwatch/inference_rows [ModelName=digits], Sum per 300 s" in mail.text
    assert "  2024-06-03 16:10  412" in mail.text
    assert "expected" not in mail.text.split("Recent datapoints")[1].splitlines()[1]


def test_direct_lambda_action_metric_alarm_uses_reason_data(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    put_points(
        aws["cloudwatch"], "Truthwatch", "feature_psi_max", {"ModelName": "digits"}, [(_at(11), 0.3172)]
    )

    app.lambda_handler(load_event("alarm-lambda-metric"), lambda_context)

    mail = _only_email()
    assert (
        mail.subject
        == "[FIRING] truthwatch-digits-feature-drift | model digits | feature_psi_max 0.3172 > 0.2"
    )
    assert "Value:           0.3172 at 2024-06-03 11:00 UTC" in mail.text
    assert "  2024-06-03 11:00  0.3172*" in mail.text
    assert "#alarmsV2:alarm/truthwatch-digits-feature-drift" in mail.text


def test_direct_lambda_action_composite_alarm_names_rule_and_child(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    app.lambda_handler(load_event("alarm-lambda-composite"), lambda_context)

    mail = _only_email()
    assert mail.subject == "[FIRING] truthwatch-digits-quality | composite: truthwatch-digits-accuracy"
    assert "Rule:            ALARM(truthwatch-digits-accuracy) OR ALARM(truthwatch-digits-f1)" in mail.text
    assert "Triggered by:    truthwatch-digits-accuracy" in mail.text
    assert "Recent datapoints" not in mail.text
    assert "#alarmsV2:alarm/truthwatch-digits-quality" in mail.html


def test_eventbridge_state_change_recovered(aws: dict[str, Any], lambda_context: LambdaContext) -> None:
    app.lambda_handler(load_event("alarm-eventbridge-state-change"), lambda_context)

    mail = _only_email()
    assert mail.subject == (
        "[RECOVERED] truthwatch-digits-prediction-drift | model digits | "
        "prediction_psi 0.0412, alarm when > 0.2"
    )
    assert "Changed:         ALARM to OK at 2024-06-03 19:01:05 UTC" in mail.text


def test_sns_message_that_is_not_an_alarm_is_forwarded_as_a_notice(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    outcome = app.lambda_handler(load_event("alarm-sns-notice"), lambda_context)

    assert outcome["sent"] == 1
    mail = _only_email()
    assert mail.subject == "[NOTICE] truthwatch deployment"
    assert "InferenceFunction alias live now points at version 14." in mail.text
    assert "stack: truthwatch" in mail.text
    assert mail.headers["X-Truthwatch-Kind"] == "notice"


def test_alarm_like_sns_message_that_cannot_be_read_is_forwarded_not_crashed(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    event = _sns_alarm(load_event("alarm-sns-metric"), NewStateValue="PANIC")

    app.lambda_handler(event, lambda_context)

    mail = _only_email()
    assert mail.subject.startswith('[NOTICE] ALARM: "truthwatch-digits-accuracy"')
    assert "state 'PANIC' is not one of OK, ALARM, INSUFFICIENT_DATA" in mail.text


def test_same_state_change_delivered_twice_sends_one_email(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    first = app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)
    app.notifier.cache_clear()  # a second container: only the table remembers
    second = app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)

    assert first == {"received": 1, "sent": 1, "duplicates": 0}
    assert second == {"received": 1, "sent": 0, "duplicates": 1}
    assert len(sent_emails()) == 1


def test_same_change_by_sns_and_by_eventbridge_sends_one_email(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    bridge = load_event("alarm-eventbridge-state-change")
    sns = _sns_alarm(
        load_event("alarm-sns-metric"),
        AlarmName="truthwatch-digits-prediction-drift",
        AlarmArn=bridge["resources"][0],
        OldStateValue="ALARM",
        NewStateValue="OK",
        StateChangeTime=bridge["detail"]["state"]["timestamp"],
    )

    app.lambda_handler(bridge, lambda_context)
    again = app.lambda_handler(sns, lambda_context)

    assert again["duplicates"] == 1
    assert len(sent_emails()) == 1


def test_a_new_state_change_of_the_same_alarm_sends_again(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)
    later = _sns_alarm(load_event("alarm-sns-metric"), StateChangeTime="2024-06-03T12:05:12.345+0000")

    app.lambda_handler(later, lambda_context)

    assert len(sent_emails()) == 2


def test_send_failure_fails_the_invocation_and_the_retry_sends(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    aws["ses"].delete_email_identity(EmailIdentity=SENDER)

    with pytest.raises(DeliveryError, match="SES did not send"):
        app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)
    assert sent_emails() == []

    aws["ses"].create_email_identity(EmailIdentity=SENDER)
    retried = app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)

    assert retried == {"received": 1, "sent": 1, "duplicates": 0}
    assert len(sent_emails()) == 1


def test_unrecognised_event_fails_loudly_and_sends_nothing(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    with pytest.raises(AlarmEventError, match=r"keys \['detail', 'detail-type', 'source'\]"):
        app.lambda_handler(
            {"source": "aws.s3", "detail-type": "Object Created", "detail": {}}, lambda_context
        )
    assert sent_emails() == []


def test_email_goes_out_without_the_link_settings(
    aws: dict[str, Any], lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_BUCKET")
    monkeypatch.delenv("DASHBOARD_NAME")

    app.lambda_handler(load_event("alarm-sns-metric"), lambda_context)

    mail = _only_email()
    assert ALARM_LINK in mail.text
    assert "Dashboard:" not in mail.text and "Latest reports:" not in mail.text


def test_an_alarm_name_with_a_line_break_sends_one_cleaned_email_to_the_recipients_only(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    event = _sns_alarm(load_event("alarm-sns-metric"), AlarmName="x\r\nBcc: evil@example.com")

    outcome = app.lambda_handler(event, lambda_context)

    assert outcome == {"received": 1, "sent": 1, "duplicates": 0}
    mail = _only_email()
    assert mail.destinations == ["oncall@example.com", "ml-team@example.org"]
    assert mail.headers["Bcc"] is None
    assert mail.subject.startswith("[FIRING] x Bcc: evil@example.com | model digits")
    assert mail.headers["X-Truthwatch-Alarm"] == "x Bcc: evil@example.com"
    assert "FIRING: x Bcc: evil@example.com\n" in mail.text


def test_a_lone_surrogate_in_the_reason_sends_the_email_with_a_replacement_character(
    aws: dict[str, Any], lambda_context: LambdaContext
) -> None:
    event = load_event("alarm-sns-metric")
    message = event["Records"][0]["Sns"]["Message"]
    event["Records"][0]["Sns"]["Message"] = message.replace(
        '"NewStateReason": "', '"NewStateReason": "\\ud800 '
    )

    outcome = app.lambda_handler(event, lambda_context)

    assert outcome["sent"] == 1
    mail = _only_email()
    reason = mail.text.split("Reason from CloudWatch:\n", 1)[1].splitlines()[0]
    assert reason.startswith("  \ufffd Threshold Crossed")
    assert "<p>\ufffd Threshold Crossed" in mail.html
