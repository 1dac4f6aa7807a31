"""Turn every shape of CloudWatch alarm input into one domain object, :class:`AlarmChange`.

Accepted inputs
---------------
- SNS events whose message is a CloudWatch alarm notification: a single metric (``Trigger.MetricName``),
  metric math (``Trigger.Metrics`` and no ``MetricName``) or an anomaly-detection band
  (``Trigger.ThresholdMetricId`` and no ``Threshold``).
- Direct Lambda alarm-action events (``source: aws.cloudwatch`` with ``alarmData``), for metric and
  composite alarms.
- EventBridge ``CloudWatch Alarm State Change`` events.
- SNS events whose message is anything else: each becomes a :class:`Notice`, forwarded as plain text.

Anything else raises :class:`AlarmEventError`, so the invocation fails and lands in the on-failure
destination instead of vanishing.

The region code comes from the alarm ARN: SNS alarm notifications carry the region's display name
(``US East (N. Virginia)``), which console links cannot use. Only when an ARN is missing is the display
name looked up in botocore's endpoint data.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, SNSEvent
from aws_lambda_powertools.utilities.data_classes.cloud_watch_alarm_event import (
    CloudWatchAlarmData,
    CloudWatchAlarmEvent,
    CloudWatchAlarmMetric,
)

from truthwatch.errors import TruthwatchError
from truthwatch.telemetry import MODEL_NAME_DIMENSION, MODEL_VERSION_DIMENSION

logger = logging.getLogger(__name__)

State = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
Transition = Literal["firing", "recovered", "no data", "ok"]
Source = Literal["sns", "lambda", "eventbridge"]

STATES: tuple[State, ...] = ("OK", "ALARM", "INSUFFICIENT_DATA")
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"

COMPARISON_SYMBOLS: dict[str, str] = {
    "GreaterThanOrEqualToThreshold": ">=",
    "GreaterThanThreshold": ">",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
    "LessThanLowerOrGreaterThanUpperThreshold": "outside the band",
    "GreaterThanUpperThreshold": "above the band",
    "LessThanLowerThreshold": "below the band",
}
"""How each ``ComparisonOperator`` reads in an email."""

_REASON_PHRASES: tuple[tuple[str, str], ...] = (
    ("greater than or equal to the threshold", "GreaterThanOrEqualToThreshold"),
    ("less than or equal to the threshold", "LessThanOrEqualToThreshold"),
    ("greater than the threshold", "GreaterThanThreshold"),
    ("less than the threshold", "LessThanThreshold"),
    ("greater than the upper thresholds", "GreaterThanUpperThreshold"),
    ("less than the lower thresholds", "LessThanLowerThreshold"),
)
# CloudWatch writes the evaluated datapoints into the reason as "[0.82 (03/06/24 10:00:00), ...]",
# newest first, with day/month/two-digit-year dates in UTC.
_REASON_DATAPOINTS = re.compile(r"datapoints? \[([^\]]*)\]")
_REASON_POINT = re.compile(r"(-?[0-9.eE+-]+) \((\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\)")
_REASON_THRESHOLD = re.compile(r"the threshold \((-?[0-9.eE+-]+)\)")
_REASON_UPPER = re.compile(r"upper thresholds \[(-?[0-9.eE+-]+)")
_REASON_LOWER = re.compile(r"lower thresholds \[(-?[0-9.eE+-]+)")
_ALARM_ARN = re.compile(r"^arn:aws[a-z-]*:cloudwatch:([a-z0-9-]+):(\d*):alarm:(.+)$")


class AlarmEventError(TruthwatchError, ValueError):
    """An event that is neither an alarm notification, an alarm action, nor an SNS message."""


@dataclass(frozen=True)
class Datapoint:
    """One value of a metric at the start of its period (UTC)."""

    timestamp: datetime
    value: float


@dataclass(frozen=True)
class MetricQuery:
    """One metric (or metric-math expression) an alarm evaluates, in GetMetricData terms."""

    id: str
    return_data: bool = True
    expression: str | None = None
    label: str | None = None
    namespace: str | None = None
    metric_name: str | None = None
    dimensions: tuple[tuple[str, str], ...] = ()
    period: int | None = None
    stat: str | None = None
    unit: str | None = None

    @property
    def title(self) -> str:
        """What a person calls this series: its label, metric name or expression."""
        return self.label or self.metric_name or self.expression or self.id


@dataclass(frozen=True)
class AlarmChange:
    """One alarm state change, whatever shape it arrived in.

    ``threshold`` is absent for anomaly-detection alarms (``band`` holds the lower and upper bounds
    when the reason states them) and for composite alarms (``alarm_rule`` holds the rule).
    ``evaluated`` holds the datapoints CloudWatch names in the reason, newest first.
    """

    alarm_name: str
    alarm_arn: str
    region: str
    account_id: str
    old_state: State
    new_state: State
    reason: str
    changed_at: datetime
    source: Source
    description: str = ""
    queries: tuple[MetricQuery, ...] = ()
    comparison: str | None = None
    threshold: float | None = None
    band: tuple[float | None, float | None] | None = None
    threshold_metric_id: str | None = None
    evaluation_periods: int | None = None
    datapoints_to_alarm: int | None = None
    treat_missing_data: str | None = None
    evaluated: tuple[Datapoint, ...] = ()
    alarm_rule: str | None = None
    triggering_alarms: tuple[str, ...] = ()

    @property
    def transition(self) -> Transition:
        """How the change reads: ``firing``, ``recovered``, ``no data`` or ``ok``."""
        return transition(self.old_state, self.new_state)

    @property
    def is_composite(self) -> bool:
        """True for a composite alarm (a rule over other alarms, no metric of its own)."""
        return self.alarm_rule is not None

    @property
    def is_anomaly_band(self) -> bool:
        """True for an alarm that compares a metric with an anomaly-detection band."""
        return self.threshold_metric_id is not None

    @property
    def dimensions(self) -> dict[str, str]:
        """Dimensions of every metric the alarm reads, merged (first one wins)."""
        merged: dict[str, str] = {}
        for query in self.queries:
            for name, value in query.dimensions:
                merged.setdefault(name, value)
        return merged

    @property
    def model_name(self) -> str | None:
        """The ``ModelName`` dimension, when the alarm watches a truthwatch metric."""
        return self.dimensions.get(MODEL_NAME_DIMENSION)

    @property
    def model_version(self) -> str | None:
        """The ``ModelVersion`` dimension; absent for alarms on the per-model series."""
        return self.dimensions.get(MODEL_VERSION_DIMENSION)

    @property
    def watched(self) -> MetricQuery | None:
        """The series compared with the threshold: the one returning data that is not the band."""
        candidates = [q for q in self.queries if q.return_data and q.id != self.threshold_metric_id]
        if self.is_anomaly_band:
            band = next((q for q in self.queries if q.id == self.threshold_metric_id), None)
            inside = [q for q in self.queries if band and band.expression and q.id in band.expression]
            candidates = inside or candidates
        return candidates[0] if candidates else None

    @property
    def latest_value(self) -> float | None:
        """The newest evaluated datapoint, when the event names one."""
        return self.evaluated[0].value if self.evaluated else None

    @property
    def idempotency_key(self) -> dict[str, str]:
        """What makes two deliveries the same change: alarm, new state, state-change time."""
        return {
            "alarm": self.alarm_arn or self.alarm_name,
            "state": self.new_state,
            "changed_at": self.changed_at.isoformat(timespec="milliseconds"),
        }


@dataclass(frozen=True)
class Notice:
    """An SNS message on the alarm topic that is not an alarm notification, forwarded as is."""

    subject: str
    message: str
    topic_arn: str
    message_id: str
    sent_at: datetime
    region: str
    note: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> dict[str, str]:
        """SNS keeps the message id across its own retries, so it names the delivery."""
        return {"sns_message": self.message_id or self.sent_at.isoformat()}


Parsed = AlarmChange | Notice


def transition(old: str, new: str) -> Transition:
    """Name a state change: anything into ALARM fires, ALARM into OK recovers, into INSUFFICIENT_DATA
    there is no data, and INSUFFICIENT_DATA (or OK) into OK is plain ``ok``."""
    if new == "ALARM":
        return "firing"
    if new == "INSUFFICIENT_DATA":
        return "no data"
    if old == "ALARM":
        return "recovered"
    return "ok"


def parse_event(event: Mapping[str, Any]) -> list[Parsed]:
    """Every alarm change or notice in a Lambda event, in delivery order.

    Raises
    ------
    AlarmEventError
        When the event is none of the accepted shapes; the message names the keys received.
    """
    if not isinstance(event, Mapping):
        raise AlarmEventError(f"expected a JSON object event, received {type(event).__name__}")

    records = event.get("Records")
    if isinstance(records, list) and records and all(_is_sns_record(r) for r in records):
        return [_from_sns_record(record.sns) for record in SNSEvent(dict(event)).records]

    if event.get("source") == "aws.cloudwatch" and isinstance(event.get("alarmData"), Mapping):
        return [_readable("CloudWatch alarm action", _from_alarm_action, CloudWatchAlarmEvent(dict(event)))]

    if event.get("detail-type") == ALARM_STATE_CHANGE and isinstance(event.get("detail"), Mapping):
        return [_readable("EventBridge alarm state change", _from_eventbridge, EventBridgeEvent(dict(event)))]

    raise AlarmEventError(
        "expected an SNS event, a CloudWatch alarm action or an EventBridge "
        f"'{ALARM_STATE_CHANGE}' event; received an object with keys {sorted(event)[:12]}"
    )


def _readable(kind: str, parse: Callable[[Any], AlarmChange], event: Any) -> AlarmChange:
    # The shape was recognised but a field is missing or of the wrong type: refuse it by name, so
    # the invocation fails with a message a person can act on instead of a KeyError.
    try:
        return parse(event)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise AlarmEventError(f"the {kind} event cannot be read: {type(error).__name__}: {error}") from error


def region_from_arn(arn: str) -> str | None:
    """The region code in a CloudWatch alarm ARN, or None when ``arn`` is not one."""
    match = _ALARM_ARN.match(arn or "")
    return match.group(1) if match else None


def region_code(display_name: str) -> str | None:
    """The region code for a display name such as ``US East (N. Virginia)``, from botocore's data."""
    from botocore.loaders import Loader  # botocore ships the partition table; loaded only on this path

    # Alarm notifications still say "EU (Ireland)" where botocore says "Europe (Ireland)".
    wanted = {display_name, re.sub(r"^EU \(", "Europe (", display_name)}
    endpoints = Loader().load_data("endpoints")
    for partition in endpoints.get("partitions", []):
        for code, region in partition.get("regions", {}).items():
            if region.get("description") in wanted:
                return str(code)
    return None


def parse_time(text: str) -> datetime:
    """Parse the timestamps CloudWatch, SNS and EventBridge write (``+0000`` or ``Z``) as UTC."""
    cleaned = text.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", cleaned):
        cleaned = f"{cleaned[:-2]}:{cleaned[-2:]}"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _is_sns_record(record: object) -> bool:
    return isinstance(record, Mapping) and isinstance(record.get("Sns"), Mapping)


def _from_sns_record(sns: Any) -> Parsed:
    raw = sns.get("Message") or ""
    topic_arn = sns.get("TopicArn") or ""
    try:
        message = json.loads(raw)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deeply to decode
        return _notice(sns, raw, topic_arn, note="")

    if not (isinstance(message, dict) and "AlarmName" in message and "NewStateValue" in message):
        return _notice(sns, raw, topic_arn, note="")

    try:
        return _from_sns_alarm(message)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # An alarm-like message we cannot read is still worth a person's eyes: forward it as is.
        logger.warning("Unreadable alarm notification forwarded as a notice", extra={"error": str(error)})
        return _notice(sns, raw, topic_arn, note=f"looked like an alarm notification but {error}")


def _notice(sns: Any, raw: str, topic_arn: str, note: str) -> Notice:
    # A notice is the fallback for whatever arrived, so every field is read defensively.
    given = sns.get("MessageAttributes")
    attributes = {
        str(name): str(value.get("Value", ""))
        for name, value in (given.items() if isinstance(given, Mapping) else ())
        if isinstance(value, Mapping)
    }
    return Notice(
        subject=str(sns.get("Subject") or ""),
        message=str(raw),
        topic_arn=str(topic_arn),
        message_id=str(sns.get("MessageId") or ""),
        sent_at=_sent_at(sns.get("Timestamp")),
        region=_region_of_topic(str(topic_arn)),
        note=note,
        attributes=attributes,
    )


def _sent_at(value: object) -> datetime:
    if isinstance(value, str) and value:
        try:
            return parse_time(value)
        except ValueError:
            logger.warning("Unreadable SNS timestamp; the notice carries the time it was read")
    return datetime.now(UTC)


def _region_of_topic(topic_arn: str) -> str:
    parts = topic_arn.split(":")
    return parts[3] if len(parts) > 4 else ""


def _from_sns_alarm(message: Mapping[str, Any]) -> AlarmChange:
    trigger = message.get("Trigger") or {}
    arn = str(message.get("AlarmArn") or "")
    region = region_from_arn(arn) or region_code(str(message.get("Region") or "")) or ""
    reason = str(message.get("NewStateReason") or "")
    queries = _sns_queries(trigger)
    threshold = _finite(trigger.get("Threshold"))
    threshold_metric_id = trigger.get("ThresholdMetricId") or None
    reason_data = _json_object(message.get("NewStateReasonData"))

    return AlarmChange(
        alarm_name=str(message["AlarmName"]),
        alarm_arn=arn,
        region=region,
        account_id=str(message.get("AWSAccountId") or _account_from_arn(arn)),
        old_state=_state(message.get("OldStateValue")),
        new_state=_state(message["NewStateValue"]),
        reason=reason,
        changed_at=parse_time(str(message["StateChangeTime"])),
        source="sns",
        description=str(message.get("AlarmDescription") or ""),
        queries=queries,
        comparison=trigger.get("ComparisonOperator") or _comparison_from_reason(reason),
        threshold=threshold if threshold is not None else _threshold_from(reason_data, reason),
        band=_band_from_reason(reason) if threshold_metric_id else None,
        threshold_metric_id=threshold_metric_id,
        evaluation_periods=_int(trigger.get("EvaluationPeriods")),
        datapoints_to_alarm=_int(trigger.get("DatapointsToAlarm")),
        treat_missing_data=trigger.get("TreatMissingData") or None,
        evaluated=_evaluated(reason_data, reason),
    )


def _sns_queries(trigger: Mapping[str, Any]) -> tuple[MetricQuery, ...]:
    if trigger.get("MetricName"):
        stat = trigger.get("ExtendedStatistic") or _stat_name(trigger.get("Statistic"))
        return (
            MetricQuery(
                id="m1",
                namespace=trigger.get("Namespace"),
                metric_name=str(trigger["MetricName"]),
                dimensions=_dimensions(trigger.get("Dimensions")),
                period=_int(trigger.get("Period")),
                stat=stat,
                unit=trigger.get("Unit") or None,
            ),
        )

    queries = []
    for item in trigger.get("Metrics") or []:
        stat = item.get("MetricStat") or {}
        metric = stat.get("Metric") or {}
        queries.append(
            MetricQuery(
                id=str(item["Id"]),
                return_data=bool(item.get("ReturnData", True)),
                expression=item.get("Expression"),
                label=item.get("Label"),
                namespace=metric.get("Namespace"),
                metric_name=metric.get("MetricName"),
                dimensions=_dimensions(metric.get("Dimensions")),
                period=_int(stat.get("Period") or item.get("Period")),
                stat=stat.get("Stat"),
                unit=stat.get("Unit"),
            )
        )
    return tuple(queries)


def _from_alarm_action(event: CloudWatchAlarmEvent) -> AlarmChange:
    return _from_alarm_data(
        event.alarm_data,
        arn=event.alarm_arn,
        region=event.region,
        account_id=event.source_account_id,
        source="lambda",
    )


def _from_eventbridge(event: EventBridgeEvent) -> AlarmChange:
    arn = next((r for r in event.resources if region_from_arn(r)), "")
    return _from_alarm_data(
        CloudWatchAlarmData(event.detail),
        arn=arn,
        region=region_from_arn(arn) or event.region,
        account_id=event.account,
        source="eventbridge",
    )


def _from_alarm_data(
    data: CloudWatchAlarmData, *, arn: str, region: str, account_id: str, source: Source
) -> AlarmChange:
    state = data.state
    reason = state.get("reason") or ""
    reason_data = _json_object(state.get("reasonData"))
    config = data.configuration
    queries = tuple(_action_query(m) for m in config.metrics)
    band_ids = [q.id for q in queries if q.expression and "ANOMALY_DETECTION_BAND" in q.expression]
    triggering = tuple(
        str(item.get("arn", "")) for item in (reason_data or {}).get("triggeringAlarms", []) or []
    )

    return AlarmChange(
        alarm_name=data.alarm_name,
        alarm_arn=arn,
        region=region_from_arn(arn) or region,
        account_id=account_id,
        old_state=_state((data.get("previousState") or {}).get("value")),
        new_state=_state(state.value),
        reason=reason,
        changed_at=parse_time(state.timestamp),
        source=source,
        description=config.description or "",
        queries=queries,
        comparison=_comparison_from_reason(reason),
        threshold=_threshold_from(reason_data, reason),
        band=_band_from_reason(reason) if band_ids else None,
        threshold_metric_id=band_ids[0] if band_ids else None,
        evaluated=_evaluated(reason_data, reason),
        alarm_rule=config.alarm_rule,
        triggering_alarms=tuple(t for t in triggering if t),
    )


def _action_query(metric: CloudWatchAlarmMetric) -> MetricQuery:
    stat = metric.get("metricStat") or {}
    inner = stat.get("metric") or {}
    dims = inner.get("dimensions") or {}
    return MetricQuery(
        id=metric.metric_id,
        return_data=bool(metric.get("returnData", True)),
        expression=metric.expression,
        label=metric.label,
        namespace=inner.get("namespace"),
        metric_name=inner.get("name"),
        dimensions=tuple(sorted((str(k), str(v)) for k, v in dims.items())),
        period=_int(stat.get("period")),
        stat=stat.get("stat"),
        unit=stat.get("unit"),
    )


def _state(value: object) -> State:
    text = str(value or "INSUFFICIENT_DATA")
    for state in STATES:
        if text == state:
            return state
    raise ValueError(f"state {text!r} is not one of {', '.join(STATES)}")


def _stat_name(value: object) -> str | None:
    # SNS notifications spell statistics in capitals ("AVERAGE"); GetMetricData wants "Average".
    if not value:
        return None
    text = str(value)
    return {"SAMPLE_COUNT": "SampleCount"}.get(text.upper(), text.capitalize())


def _dimensions(items: object) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items or []:  # type: ignore[attr-defined]
        name = item.get("name", item.get("Name"))
        value = item.get("value", item.get("Value"))
        if name is not None:
            pairs.append((str(name), str(value)))
    return tuple(sorted(pairs))


def _json_object(value: object) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if not value:
        return None
    try:
        parsed = json.loads(str(value))
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _finite(value: object) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _finite(value)
    return int(number) if number is not None else None


def _account_from_arn(arn: str) -> str:
    match = _ALARM_ARN.match(arn or "")
    return match.group(2) if match else ""


def _comparison_from_reason(reason: str) -> str | None:
    if "upper thresholds" in reason and "lower thresholds" in reason:
        return "LessThanLowerOrGreaterThanUpperThreshold"
    for phrase, operator in _REASON_PHRASES:
        if phrase in reason:
            return operator
    return None


def _threshold_from(reason_data: Mapping[str, Any] | None, reason: str) -> float | None:
    if reason_data and _finite(reason_data.get("threshold")) is not None:
        return _finite(reason_data.get("threshold"))
    match = _REASON_THRESHOLD.search(reason)
    return _finite(match.group(1)) if match else None


def _band_from_reason(reason: str) -> tuple[float | None, float | None] | None:
    lower = _REASON_LOWER.search(reason)
    upper = _REASON_UPPER.search(reason)
    if not (lower or upper):
        return None
    return (_finite(lower.group(1)) if lower else None, _finite(upper.group(1)) if upper else None)


def _evaluated(reason_data: Mapping[str, Any] | None, reason: str) -> tuple[Datapoint, ...]:
    points = _evaluated_from_data(reason_data.get("evaluatedDatapoints") or []) if reason_data else []
    if not points:
        points = _evaluated_from_reason(reason)
    return tuple(sorted(points, key=lambda p: p.timestamp, reverse=True))


def _evaluated_from_data(items: Iterable[Any]) -> list[Datapoint]:
    points = []
    for item in items:
        value = _finite(item.get("value")) if isinstance(item, Mapping) else None
        if value is not None and item.get("timestamp"):
            points.append(Datapoint(parse_time(str(item["timestamp"])), value))
    return points


def _evaluated_from_reason(reason: str) -> list[Datapoint]:
    match = _REASON_DATAPOINTS.search(reason)
    if not match:
        return []
    points = []
    for value_text, when in _REASON_POINT.findall(match.group(1)):
        value = _finite(value_text)
        if value is not None:
            stamp = datetime.strptime(when, "%d/%m/%y %H:%M:%S").replace(tzinfo=UTC)
            points.append(Datapoint(stamp, value))
    return points
