"""Rendering the alarm email: subject, text, HTML, links and the datapoints table."""

from __future__ import annotations

import dataclasses
import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

import pytest

from tests.events import load_event
from truthwatch.alarms import AlarmChange, Datapoint, parse_event
from truthwatch.email import (
    SUBJECT_MAX_CHARS,
    TABLE_MAX_ROWS,
    Links,
    RecentData,
    Series,
    console_links,
    format_value,
    render_alarm,
    render_notice,
    subject_line,
)
from truthwatch.notify import build_message

LINKS = Links(alarm="https://example.com/alarm?a=1&b=2")


def _change(name: str) -> AlarmChange:
    (item,) = parse_event(load_event(name))
    assert isinstance(item, AlarmChange)
    return item


def _hourly(values: list[float]) -> RecentData:
    points = tuple(Datapoint(datetime(2024, 6, 3, h, tzinfo=UTC), v) for h, v in enumerate(values))
    return RecentData(series=(Series("m1", "accuracy_score", points),))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.8125, "0.8125"),
        (412.0, "412"),
        (1234567.0, "1.235e+06"),
        (None, "no data"),
        (float("nan"), "no data"),
    ],
)
def test_format_value(value: float | None, text: str) -> None:
    assert format_value(value) == text


def test_console_links_use_the_region_code_and_the_version_prefix() -> None:
    change = dataclasses.replace(
        _change("alarm-sns-metric"),
        queries=(
            dataclasses.replace(
                _change("alarm-sns-metric").queries[0],
                dimensions=(("ModelName", "digits"), ("ModelVersion", "3c1db9196db7")),
            ),
        ),
    )

    links = console_links(change, dashboard_name="truthwatch dash", data_bucket="bucket-1")

    assert links.alarm == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/truthwatch-digits-accuracy"
    )
    assert links.dashboard is not None and links.dashboard.endswith("#dashboards/dashboard/truthwatch%20dash")
    assert links.reports == (
        "https://s3.console.aws.amazon.com/s3/buckets/bucket-1?region=eu-west-1"
        "&prefix=reports%2F3c1db9196db7%2F&showversions=false"
    )
    assert "model digits 3c1db9196db7" in subject_line(change)


def test_console_links_without_dashboard_or_bucket() -> None:
    links = console_links(_change("alarm-sns-metric"), dashboard_name=None, data_bucket=None)

    assert (links.dashboard, links.reports) == (None, None)


def test_table_marks_only_values_that_cross_the_threshold() -> None:
    rendered = render_alarm(_change("alarm-sns-metric"), _hourly([0.95, 0.9, 0.85]), LINKS)

    assert "  2024-06-03 02:00  0.85*" in rendered.text
    assert "  2024-06-03 01:00  0.9\n" in rendered.text  # equal to a "<" threshold does not cross
    assert "0.9*" not in rendered.text
    assert rendered.html.count("font-weight:bold") == 1


def test_table_keeps_the_newest_rows() -> None:
    values = [0.9 + i / 1000 for i in range(TABLE_MAX_ROWS + 5)]

    rendered = render_alarm(_change("alarm-sns-metric"), _hourly(values), LINKS)

    rows = [line for line in rendered.text.splitlines() if line.startswith("  2024-06-03")]
    assert len(rows) == TABLE_MAX_ROWS
    assert rows[0].startswith("  2024-06-03 16:00")


def test_value_comes_from_recent_data_when_the_event_names_none() -> None:
    change = dataclasses.replace(_change("alarm-sns-metric"), evaluated=())

    assert subject_line(change, _hourly([0.95, 0.81])) == (
        "[FIRING] truthwatch-digits-accuracy | model digits | accuracy_score 0.81 < 0.9"
    )


def test_no_data_names_no_value_even_when_older_datapoints_exist() -> None:
    firing = _change("alarm-sns-metric")
    change = dataclasses.replace(firing, old_state="ALARM", new_state="INSUFFICIENT_DATA", evaluated=())

    rendered = render_alarm(change, _hourly([0.95, 0.81]), LINKS)

    assert rendered.subject == (
        "[NO DATA] truthwatch-digits-accuracy | model digits | accuracy_score no data, alarm when < 0.9"
    )
    assert "Value:           no data" in rendered.text
    assert "0.81" in rendered.text


def test_fetch_problem_is_said_in_both_parts() -> None:
    rendered = render_alarm(
        _change("alarm-sns-metric"), RecentData(problem="could not be read (Throttling)"), LINKS
    )

    assert "Recent datapoints: could not be read (Throttling)." in rendered.text
    assert "<p>could not be read (Throttling).</p>" in rendered.html


def test_alarm_text_is_escaped_in_html() -> None:
    change = dataclasses.replace(
        _change("alarm-sns-metric"), description="<script>alert(1)</script> & check", alarm_name="a<b>"
    )

    rendered = render_alarm(change, None, LINKS)

    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; check" in rendered.html
    assert "<h2 style='color:#b42318;margin:0 0 8px'>FIRING: a&lt;b&gt;</h2>" in rendered.html
    assert "href='https://example.com/alarm?a=1&amp;b=2'" in rendered.html


def test_subject_is_one_line_and_cut() -> None:
    change = dataclasses.replace(
        _change("alarm-sns-metric"), alarm_name="x" * 300 + "\r\nBcc: evil@example.com"
    )

    subject = subject_line(change)

    assert "\n" not in subject and "\r" not in subject
    assert len(subject) == SUBJECT_MAX_CHARS
    assert subject.endswith("…")


def test_notice_is_rendered_plainly() -> None:
    (notice,) = parse_event(load_event("alarm-sns-notice"))
    assert not isinstance(notice, AlarmChange)

    rendered = render_notice(notice)

    assert rendered.subject == "[NOTICE] truthwatch deployment"
    assert "Sent:     2024-06-03 08:00:01 UTC" in rendered.text
    assert rendered.text.rstrip().endswith("now points at version 14.")


def test_mime_message_has_text_and_html_alternatives() -> None:
    rendered = render_alarm(_change("alarm-sns-metric"), None, LINKS)

    raw = build_message(
        rendered, sender="a@example.com", recipients=["b@example.com", "c@example.org"], headers={}
    )
    parsed = email.message_from_bytes(raw, policy=default)

    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == rendered.subject
    assert parsed["To"] == "b@example.com, c@example.org"
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html


@pytest.mark.parametrize(
    ("changes", "visible"),
    [
        ({"alarm_name": "x\r\nBcc: evil@example.com"}, "x Bcc: evil@example.com"),
        ({"alarm_name": "a\ud800b"}, "a\ufffdb"),
        ({"reason": "\ud800 reason\x00\x1b[31m"}, "\ufffd reason[31m"),
        ({"description": "line one\r\nline two\u202e"}, "line one\nline two"),
        ({"alarm_name": "ünïcödé ☃ \u202eevil"}, "ünïcödé ☃ evil"),
    ],
)
def test_mime_message_cleans_event_text_instead_of_refusing_it(changes: dict[str, str], visible: str) -> None:
    change = dataclasses.replace(_change("alarm-sns-metric"), **changes)
    headers = {"X-Truthwatch-Alarm": change.alarm_name}
    links = console_links(change, dashboard_name="d", data_bucket="b")

    raw = build_message(
        render_alarm(change, None, links), sender="a@example.com", recipients=["b@x.org"], headers=headers
    )
    parsed = email.message_from_bytes(raw, policy=default)

    assert isinstance(parsed, EmailMessage) and parsed["Bcc"] is None and parsed["To"] == "b@x.org"
    text = parsed.get_body(preferencelist=("plain",))
    assert text is not None and visible in text.get_content().replace("\r\n", "\n")
    if "alarm_name" in changes:
        assert parsed["X-Truthwatch-Alarm"] == visible
        assert parsed["Subject"].startswith(f"[FIRING] {visible} | ")
    assert not any(c in str(parsed) for c in "\x00\x1b\u202e")
