"""Render the email a person reads when an alarm changes state: subject, plain text and HTML.

Everything here is pure: an :class:`~truthwatch.alarms.AlarmChange`, the metric's recent datapoints
and the console links go in, strings come out. Sending lives in :mod:`truthwatch.notify`.

The subject is written for triage from the inbox::

    [FIRING] truthwatch-digits-accuracy | model digits | accuracy_score 0.8125 < 0.9
    [RECOVERED] truthwatch-digits-prediction-drift | model digits | prediction_psi 0.0412, alarm when > 0.2
    [NO DATA] truthwatch-digits-accuracy | model digits | accuracy_score no data, alarm when < 0.9

INSUFFICIENT_DATA always reads "no data", never "resolved": an alarm without data says nothing about
whether the problem went away.

Notes
-----
Recent datapoints are a table, not a chart: the common webmail clients strip inline SVG and
``data:`` images, and a table also reads the same in the plain-text part.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from truthwatch.alarms import COMPARISON_SYMBOLS, AlarmChange, Datapoint, MetricQuery, Notice, Transition

SUBJECT_MAX_CHARS = 180
"""Long subjects are cut here; inboxes show far less, and the alarm name comes first."""

TABLE_MAX_ROWS = 12
"""Newest datapoints shown in the table."""

HEADLINES: dict[Transition, str] = {
    "firing": "FIRING",
    "recovered": "RECOVERED",
    "no data": "NO DATA",
    "ok": "OK",
}
_COLOURS: dict[Transition, str] = {
    "firing": "#b42318",
    "recovered": "#067647",
    "no data": "#93370d",
    "ok": "#344054",
}


# What a person cannot see and a mail client may act on: C0 and C1 controls, DEL, and the
# bidirectional embeddings, overrides and isolates (U+202E can make a name read backwards).
# Tab and line feed are kept in a body; in a header every kind of whitespace is one space first.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def header_text(value: str) -> str:
    """A header value cleaned to what a person reads: one line, no control characters, valid UTF-8.

    Alarm names, descriptions and reasons come from the event as they are. A CR or LF would start a
    header of its own (``Bcc: ...``), so every run of whitespace becomes one space; other controls
    and bidirectional overrides are dropped; a lone surrogate (``"\\ud800"`` in the JSON), which
    UTF-8 cannot encode, becomes U+FFFD. The visible text is kept, so the email still goes out.
    """
    flat = " ".join(value.split())
    return _SURROGATE.sub("\ufffd", _INVISIBLE.sub("", flat))


def body_text(text: str) -> str:
    """Text for a body part: line ends as ``\\n``, controls but tab and line feed dropped, valid UTF-8."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return _SURROGATE.sub("\ufffd", _INVISIBLE.sub("", lines))


@dataclass(frozen=True)
class Series:
    """Recent values of one metric or expression the alarm reads."""

    query_id: str
    title: str
    points: tuple[Datapoint, ...]


@dataclass(frozen=True)
class RecentData:
    """What GetMetricData returned for the alarm's metrics, or why it returned nothing."""

    series: tuple[Series, ...] = ()
    problem: str = ""


@dataclass(frozen=True)
class Links:
    """Console addresses for the alarm, the dashboard and the reports folder."""

    alarm: str
    dashboard: str | None = None
    reports: str | None = None


@dataclass(frozen=True)
class RenderedEmail:
    """A message ready to send: one-line subject, plain-text part and HTML part."""

    subject: str
    text: str
    html: str


def format_value(value: float | None) -> str:
    """A metric value in at most four significant digits (``0.8125``, ``412``, ``1.235e+06``)."""
    if value is None or not math.isfinite(value):
        return "no data"
    return format(value, ".4g")


def format_time(moment: datetime, *, seconds: bool = False) -> str:
    """A UTC time as ``2024-06-03 11:05`` (with ``:12`` seconds when asked)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"


def console_links(change: AlarmChange, *, dashboard_name: str | None, data_bucket: str | None) -> Links:
    """Links to the alarm, the dashboard and the reports of the alarm's model version.

    The reports link opens the S3 console at ``reports/<ModelVersion>/`` when the alarm carries that
    dimension, else at ``reports/``: the alarms watch the per-model series, which has no version.
    """
    region = change.region
    host = f"https://{region}.console.aws.amazon.com" if region else "https://console.aws.amazon.com"
    query = f"?region={region}" if region else ""
    alarm = f"{host}/cloudwatch/home{query}#alarmsV2:alarm/{_quoted(change.alarm_name)}"
    dashboard = (
        f"{host}/cloudwatch/home{query}#dashboards/dashboard/{_quoted(dashboard_name)}"
        if dashboard_name
        else None
    )
    reports = None
    if data_bucket:
        prefix = f"reports/{change.model_version}/" if change.model_version else "reports/"
        params = (
            {"region": region, "prefix": prefix, "showversions": "false"} if region else {"prefix": prefix}
        )
        reports = f"https://s3.console.aws.amazon.com/s3/buckets/{quote(data_bucket)}?{urlencode(params)}"
    return Links(alarm=alarm, dashboard=dashboard, reports=reports)


def _quoted(name: str) -> str:
    # errors="replace": a lone surrogate in a name (only a forged event holds one) must not cost the email.
    return quote(name, safe="", errors="replace")


def condition(change: AlarmChange) -> str:
    """What makes the alarm fire, in words: ``< 0.9``, ``outside the band 61.2 .. 240.5``, a rule."""
    if change.is_composite:
        return f"rule {change.alarm_rule}"
    symbol = COMPARISON_SYMBOLS.get(change.comparison or "", change.comparison or "")
    if change.is_anomaly_band:
        lower, upper = change.band or (None, None)
        if lower is None and upper is None:
            return f"{symbol or 'outside the band'} (anomaly detection)"
        return f"{symbol} {format_value(lower)} .. {format_value(upper)}"
    if change.threshold is None:
        return symbol or "its threshold"
    return f"{symbol} {format_value(change.threshold)}".strip()


def current_value(change: AlarmChange, recent: RecentData | None) -> tuple[float | None, datetime | None]:
    """The newest value of the watched metric: from the event's reason, else from the recent data.

    A change into ``INSUFFICIENT_DATA`` that names no datapoint has none: an older datapoint from
    the recent data is not what the alarm saw, so it is left to the table.
    """
    if change.evaluated:
        return change.evaluated[0].value, change.evaluated[0].timestamp
    if change.transition == "no data":
        return None, None
    watched = change.watched
    if recent and watched:
        for series in recent.series:
            if series.query_id == watched.id and series.points:
                newest = max(series.points, key=lambda p: p.timestamp)
                return newest.value, newest.timestamp
    return None, None


def subject_line(change: AlarmChange, recent: RecentData | None = None) -> str:
    """The inbox line: state, alarm, model, and the value against the threshold."""
    parts = [f"[{HEADLINES[change.transition]}] {change.alarm_name}"]
    if change.model_name:
        version = f" {change.model_version}" if change.model_version else ""
        parts.append(f"model {change.model_name}{version}")

    if change.is_composite:
        children = ", ".join(_alarm_name(arn) for arn in change.triggering_alarms)
        parts.append(f"composite: {children or change.alarm_rule}")
    else:
        watched = change.watched
        value, _ = current_value(change, recent)
        name = watched.title if watched else "value"
        rule = condition(change)
        if change.transition == "firing" and value is not None:
            parts.append(f"{name} {format_value(value)} {rule}")
        else:
            parts.append(f"{name} {format_value(value)}, alarm when {rule}")

    return _one_line(" | ".join(parts), SUBJECT_MAX_CHARS)


def render_alarm(change: AlarmChange, recent: RecentData | None, links: Links) -> RenderedEmail:
    """Subject, text and HTML for one alarm state change."""
    facts = _facts(change, recent)
    rows = _table_rows(recent)
    return RenderedEmail(
        subject=subject_line(change, recent),
        text=body_text(_alarm_text(change, facts, recent, rows, links)),
        html=body_text(_alarm_html(change, facts, recent, rows, links)),
    )


def render_notice(notice: Notice) -> RenderedEmail:
    """A plain notice for an SNS message on the alarm topic that is not an alarm."""
    title = notice.subject or "message on the alarm topic"
    subject = _one_line(f"[NOTICE] {title}", SUBJECT_MAX_CHARS)
    one = header_text  # a line break in a field would start what looks like another field
    lines = [
        "A message arrived on the alarm topic that is not a CloudWatch alarm notification.",
        "It is forwarded as received.",
        "",
        f"Topic:    {one(notice.topic_arn)}",
        f"Sent:     {format_time(notice.sent_at, seconds=True)}",
        f"Message:  {one(notice.message_id)}",
    ]
    if notice.note:
        lines.append(f"Note:     {one(notice.note)}")
    lines += [f"{one(name)}: {one(value)}" for name, value in sorted(notice.attributes.items())]
    lines += ["", notice.message]
    facts = _notice_facts(notice)
    text = "\n".join(lines) + "\n"

    head = "".join(f"<p>{html.escape(line)}</p>" for line in lines[:2])
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    body = (
        f"{head}<table cellpadding='4'>{rows}</table>"
        f"<pre style='white-space:pre-wrap;font-family:monospace'>{html.escape(notice.message)}</pre>"
    )
    return RenderedEmail(
        subject=subject, text=body_text(text), html=body_text(_page(subject, "#344054", body))
    )


def _notice_facts(notice: Notice) -> list[tuple[str, str]]:
    facts = [
        ("Topic", notice.topic_arn),
        ("Sent", format_time(notice.sent_at, seconds=True)),
        ("Message id", notice.message_id),
    ]
    if notice.note:
        facts.append(("Note", notice.note))
    # One line each, like an alarm's facts; the message itself keeps its lines.
    return [(header_text(k), header_text(v)) for k, v in facts + sorted(notice.attributes.items())]


def _facts(change: AlarmChange, recent: RecentData | None) -> list[tuple[str, str]]:
    facts = [("Alarm", change.alarm_name)]
    if change.model_name:
        version = f"version {change.model_version}" if change.model_version else "all versions"
        facts.append(("Model", f"{change.model_name}, {version}"))

    if change.is_composite:
        facts.append(("Rule", change.alarm_rule or ""))
        children = ", ".join(_alarm_name(arn) for arn in change.triggering_alarms)
        if children:
            facts.append(("Triggered by", children))
    else:
        watched = change.watched
        value, when = current_value(change, recent)
        if watched:
            facts.append(("Metric", _describe_query(watched)))
        at = f" at {format_time(when)}" if when else ""
        facts.append(("Value", f"{format_value(value)}{at}"))
        facts.append(("Alarm when", _alarm_when(change)))

    facts.append(
        (
            "Changed",
            f"{change.old_state} to {change.new_state} at {format_time(change.changed_at, seconds=True)}",
        )
    )
    facts.append(("Account, region", f"{change.account_id or 'unknown'}, {change.region or 'unknown'}"))
    # One line each: a line break in a name would start what looks like another fact ("Bcc: ...").
    return [(name, header_text(value)) for name, value in facts]


def _alarm_when(change: AlarmChange) -> str:
    text = condition(change)
    if change.evaluation_periods:
        needed = change.datapoints_to_alarm or change.evaluation_periods
        text += f" in {needed} of {change.evaluation_periods} periods"
    if change.treat_missing_data:
        text += f" (missing data: {change.treat_missing_data})"
    return text


def _describe_query(query: MetricQuery) -> str:
    if query.expression and not query.metric_name:
        return f"{query.title} = {query.expression}"
    dims = ", ".join(f"{k}={v}" for k, v in query.dimensions)
    stat = f", {query.stat}" if query.stat else ""
    period = f" per {query.period} s" if query.period else ""
    return f"{query.namespace}/{query.metric_name} [{dims}]{stat}{period}"


def _meaning(change: AlarmChange) -> str:
    if change.transition == "firing":
        return "The alarm condition is met."
    if change.transition == "recovered":
        return "The metric is back within its threshold; no action is needed unless it flaps."
    if change.transition == "no data":
        return (
            "CloudWatch has too few datapoints to evaluate the alarm. This is not a recovery: the "
            "publisher may have stopped (for quality metrics, no label files arrived)."
        )
    return "The alarm has data again and its condition is not met."


Row = tuple[datetime, list[float | None]]


def _table_rows(recent: RecentData | None) -> list[Row]:
    if not recent or not recent.series:
        return []
    stamps = sorted({p.timestamp for s in recent.series for p in s.points}, reverse=True)[:TABLE_MAX_ROWS]
    lookup = [{p.timestamp: p.value for p in s.points} for s in recent.series]
    return [(stamp, [values.get(stamp) for values in lookup]) for stamp in stamps]


def _crosses(change: AlarmChange, value: float | None) -> bool:
    if value is None or change.threshold is None or change.is_anomaly_band:
        return False
    operator = change.comparison or ""
    checks = {
        "GreaterThanOrEqualToThreshold": value >= change.threshold,
        "GreaterThanThreshold": value > change.threshold,
        "LessThanThreshold": value < change.threshold,
        "LessThanOrEqualToThreshold": value <= change.threshold,
    }
    return checks.get(operator, False)


def _watched_column(change: AlarmChange, recent: RecentData | None) -> int | None:
    watched = change.watched
    if not recent or not watched:
        return None
    ids = [s.query_id for s in recent.series]
    return ids.index(watched.id) if watched.id in ids else None


def _alarm_text(
    change: AlarmChange,
    facts: list[tuple[str, str]],
    recent: RecentData | None,
    rows: list[Row],
    links: Links,
) -> str:
    headline = HEADLINES[change.transition]
    lines = [f"{headline}: {header_text(change.alarm_name)}", _meaning(change), ""]
    width = max(len(k) for k, _ in facts) + 2
    lines += [f"{(k + ':').ljust(width)}{v}" for k, v in facts]

    if change.description:
        lines += ["", "What it means and what to check first:", f"  {change.description}"]
    lines += ["", "Reason from CloudWatch:", f"  {change.reason or 'none given'}"]

    if not change.is_composite:
        lines += ["", *_text_table(change, recent, rows)]

    lines += ["", "Links:", f"  Alarm:          {links.alarm}"]
    if links.dashboard:
        lines.append(f"  Dashboard:      {links.dashboard}")
    if links.reports:
        lines.append(f"  Latest reports: {links.reports}")
    return "\n".join(lines) + "\n"


def _text_table(change: AlarmChange, recent: RecentData | None, rows: list[Row]) -> list[str]:
    if not rows:
        why = recent.problem if recent and recent.problem else "none in the window"
        return [f"Recent datapoints: {why}."]

    assert recent is not None
    marked = _watched_column(change, recent)
    titles = [s.title for s in recent.series]
    widths = [max(len(t), 10) for t in titles]
    header = (
        "  " + "time (UTC)".ljust(18) + "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))
    )
    out = ["Recent datapoints (newest first; * crosses the threshold):", header.rstrip()]
    for stamp, values in rows:
        cells = []
        for index, (value, w) in enumerate(zip(values, widths, strict=True)):
            star = "*" if index == marked and _crosses(change, value) else ""
            cells.append(((format_value(value) if value is not None else "-") + star).ljust(w))
        out.append(("  " + stamp.strftime("%Y-%m-%d %H:%M").ljust(18) + "  ".join(cells)).rstrip())
    return out


def _alarm_html(
    change: AlarmChange,
    facts: list[tuple[str, str]],
    recent: RecentData | None,
    rows: list[Row],
    links: Links,
) -> str:
    esc = html.escape
    colour = _COLOURS[change.transition]
    parts = [
        f"<h2 style='color:{colour};margin:0 0 8px'>{esc(HEADLINES[change.transition])}: "
        f"{esc(header_text(change.alarm_name))}</h2>",
        f"<p>{esc(_meaning(change))}</p>",
        "<table cellpadding='4' style='border-collapse:collapse'>",
        *(f"<tr><th align='left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts),
        "</table>",
    ]
    if change.description:
        parts.append(f"<h3>What it means and what to check first</h3><p>{esc(change.description)}</p>")
    parts.append(f"<h3>Reason from CloudWatch</h3><p>{esc(change.reason or 'none given')}</p>")

    if not change.is_composite:
        parts.append(_html_table(change, recent, rows))

    items = [("Alarm", links.alarm), ("Dashboard", links.dashboard), ("Latest reports", links.reports)]
    parts.append(
        "<h3>Links</h3><ul>"
        + "".join(f"<li><a href='{esc(url)}'>{esc(label)}</a></li>" for label, url in items if url)
        + "</ul>"
    )
    return _page(subject_line(change, recent), colour, "".join(parts))


def _html_table(change: AlarmChange, recent: RecentData | None, rows: list[Row]) -> str:
    esc = html.escape
    if not rows:
        why = recent.problem if recent and recent.problem else "none in the window"
        return f"<h3>Recent datapoints</h3><p>{esc(why)}.</p>"

    assert recent is not None
    marked = _watched_column(change, recent)
    header = "".join(f"<th align='right'>{esc(s.title)}</th>" for s in recent.series)
    body = []
    for stamp, values in rows:
        cells = []
        for index, value in enumerate(values):
            hot = index == marked and _crosses(change, value)
            style = " style='color:#b42318;font-weight:bold'" if hot else ""
            text = format_value(value) if value is not None else "-"
            cells.append(f"<td align='right'{style}>{esc(text)}</td>")
        body.append(f"<tr><td>{esc(stamp.strftime('%Y-%m-%d %H:%M'))}</td>{''.join(cells)}</tr>")
    return (
        "<h3>Recent datapoints (UTC, newest first; bold red crosses the threshold)</h3>"
        "<table cellpadding='4' border='1' style='border-collapse:collapse'>"
        f"<tr><th align='left'>time</th>{header}</tr>{''.join(body)}</table>"
    )


def _page(title: str, colour: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body style='font-family:Arial,sans-serif;font-size:14px;border-top:4px solid {colour};"
        f"padding-top:8px'>{body}</body></html>"
    )


def _alarm_name(arn: str) -> str:
    return arn.split(":alarm:", 1)[-1]


def _one_line(text: str, limit: int) -> str:
    # Header injection and folded subjects both start with a line break; header_text collapses it.
    flat = header_text(text)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
