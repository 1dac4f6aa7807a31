"""The local alarm evaluator: moto stores CloudWatch alarms but never evaluates them.

Local only; nothing here is deployed, and CloudWatch itself evaluates the real alarms.

Each alarm created from ``template.yaml`` is evaluated the way CloudWatch describes it
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsData.html): its
statistic (``Average``, ``Sum``, ``Minimum``, ``Maximum``, ``SampleCount`` or a percentile such as
``p99``) per period over the datapoints of its exact metric (namespace, name, full dimension set),
the last ``EvaluationPeriods`` periods, ``DatapointsToAlarm`` of them breaching to alarm, the
comparison against the threshold, and the missing-data treatment (``missing``, ``notBreaching``,
``breaching``, ``ignore``). A state change is written to moto (``SetAlarmState``) and published to
the alarm's actions for the new state, as the JSON notification CloudWatch sends to SNS.

Simplifications, written down because they change what a reader sees:

- **Time runs faster.** Every alarm period lasts ``period_s`` seconds locally (10 by default),
  whatever the template says, so a story of hours plays in minutes. The notification still states
  the template's period.
- **A datapoint counts in the local period in which it arrived**, not at its timestamp: the metrics
  function timestamps quality metrics at the hour of the predictions, so every datapoint of a
  minutes-long session would otherwise land in one period.
- **The alarm email's two clocks.** The value an email names is the one the evaluator compared
  (from the reason, stamped with the local period's start); its table of recent datapoints comes
  from GetMetricData over the template's hourly periods, where every phase of a short session
  falls into the same hour and averages together. Deployed, both are the same hourly series.
- Only whole periods are evaluated: a state changes at most ``period_s`` (plus a tick) after the
  datapoint that causes it.
- The first evaluation of each alarm after start sets its state without notifying anyone (CloudWatch
  would send the INSUFFICIENT_DATA to OK transition of every new alarm).
- Metric-math and anomaly-detection alarms are not evaluated (listed as skipped at start); actions
  other than SNS topics are logged and not run.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricAlarmTypeDef
    from mypy_boto3_sns import SNSClient

logger = logging.getLogger(__name__)

State = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]

COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")


@dataclass(frozen=True)
class Sample:
    """What one PutMetricData datum contributes to a period: a value or a statistic set."""

    count: float
    total: float
    minimum: float
    maximum: float
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, value: float) -> Sample:
        """A single value."""
        return cls(1.0, value, value, value, (value,))


def statistic(samples: Sequence[Sample], name: str) -> float | None:
    """One period's statistic over its samples, ``None`` when it is undefined (no data).

    Percentiles (``p0`` to ``p100``) use the nearest-rank method over the single values; statistic
    sets carry no distribution and do not count towards them.
    """
    if not samples:
        return None
    count = sum(s.count for s in samples)
    if name == "SampleCount":
        return count
    if name == "Sum":
        return sum(s.total for s in samples)
    if name == "Average":
        return sum(s.total for s in samples) / count if count else None
    if name == "Minimum":
        return min(s.minimum for s in samples)
    if name == "Maximum":
        return max(s.maximum for s in samples)
    if name.startswith("p"):
        values = sorted(v for s in samples for v in s.values)
        if not values:
            return None
        rank = math.ceil(float(name[1:]) / 100 * len(values))
        return values[min(max(rank, 1), len(values)) - 1]
    raise ValueError(f"statistic {name!r} is not one of SampleCount, Sum, Average, Minimum, Maximum, pNN")


@dataclass(frozen=True)
class AlarmRule:
    """A single-metric alarm as moto describes it (from the template's properties)."""

    name: str
    arn: str
    description: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    threshold: float
    treat_missing_data: str
    actions_enabled: bool = True
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    unit: str | None = None

    @classmethod
    def from_alarm(cls, alarm: MetricAlarmTypeDef) -> AlarmRule:
        """Build from one ``DescribeAlarms`` entry.

        Raises
        ------
        ValueError
            For alarms the local evaluator does not evaluate (metric math, anomaly bands).
        """
        name = alarm["AlarmName"]
        if "MetricName" not in alarm or alarm.get("Metrics"):
            raise ValueError(f"alarm {name!r} uses metric math, which is not evaluated locally")
        comparison = alarm["ComparisonOperator"]
        if comparison not in COMPARISONS or "Threshold" not in alarm:
            raise ValueError(f"alarm {name!r} compares with {comparison}, which is not evaluated locally")
        stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or ""
        statistic([Sample.of(0.0)], stat)
        periods = int(alarm["EvaluationPeriods"])
        return cls(
            name=name,
            arn=alarm["AlarmArn"],
            description=alarm.get("AlarmDescription", ""),
            namespace=alarm["Namespace"],
            metric_name=alarm["MetricName"],
            dimensions=tuple(sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions", []))),
            statistic=stat,
            period=int(alarm["Period"]),
            evaluation_periods=periods,
            datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or periods),
            comparison=comparison,
            threshold=float(alarm["Threshold"]),
            treat_missing_data=alarm.get("TreatMissingData") or "missing",
            actions_enabled=bool(alarm.get("ActionsEnabled", True)),
            alarm_actions=tuple(alarm.get("AlarmActions", [])),
            ok_actions=tuple(alarm.get("OKActions", [])),
            insufficient_data_actions=tuple(alarm.get("InsufficientDataActions", [])),
            unit=alarm.get("Unit"),
        )

    def breaches(self, value: float) -> bool:
        """Whether one period's value is on the alarming side of the threshold."""
        return COMPARISONS[self.comparison][0](value, self.threshold)

    def actions_for(self, state: State) -> tuple[str, ...]:
        """The actions CloudWatch runs on entering ``state``."""
        if not self.actions_enabled:
            return ()
        return {"ALARM": self.alarm_actions, "OK": self.ok_actions}.get(state, self.insufficient_data_actions)


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating one alarm over its last periods."""

    state: State
    reason: str
    values: tuple[float | None, ...]


def evaluate(
    rule: AlarmRule,
    values: Sequence[float | None],
    current: State,
    starts: Sequence[datetime] | None = None,
) -> Evaluation:
    """The state an alarm should be in, given its last periods' values (oldest first, ``None`` = no data).

    Missing periods follow ``TreatMissingData``: ``notBreaching`` and ``breaching`` count them as
    good or bad; ``missing`` and ``ignore`` leave them out, and when every period is missing the
    alarm goes to ``INSUFFICIENT_DATA`` (``missing``) or keeps its state (``ignore``).

    With ``starts`` (each period's start, oldest first) the reason lists the datapoints as
    CloudWatch does, newest first with their times, so readers of the reason (the alarm email)
    take the value the alarm compared from it.
    """
    values = tuple(values)
    treatment = rule.treat_missing_data if rule.treat_missing_data in TREATMENTS else "missing"
    judged: list[bool] = []
    for value in values:
        if value is not None:
            judged.append(rule.breaches(value))
        elif treatment in ("notBreaching", "breaching"):
            judged.append(treatment == "breaching")
    missing = sum(v is None for v in values)

    if not judged:
        if treatment == "ignore":
            return Evaluation(current, "Every datapoint was missing; the state is kept (ignore).", values)
        return Evaluation(
            "INSUFFICIENT_DATA", f"Insufficient Data: {missing} datapoint(s) were unknown.", values
        )

    breaching = sum(judged)
    state: State = "ALARM" if breaching >= rule.datapoints_to_alarm else "OK"
    reason = _reason(rule, values, breaching, missing, state, current, treatment, starts)
    return Evaluation(state, reason, values)


def _reason(
    rule: AlarmRule,
    values: tuple[float | None, ...],
    breaching: int,
    missing: int,
    state: State,
    current: State,
    treatment: str,
    starts: Sequence[datetime] | None,
) -> str:
    words = COMPARISONS[rule.comparison][1]
    if starts is None:
        present = [f"{v:.6g}" for v in values if v is not None]
    else:
        # CloudWatch's own wording: newest first, each value with its period's start.
        dated = reversed(list(zip(values, starts, strict=True)))
        present = [f"{v:.6g} ({at:%d/%m/%y %H:%M:%S})" for v, at in dated if v is not None]
    if not present:
        treated = "Breaching" if treatment == "breaching" else "NonBreaching"
        return (
            f"Threshold Crossed: no datapoints were received for {missing} period(s) and {missing} "
            f"missing datapoint(s) were treated as [{treated}]."
        )
    verb = "was" if state == "ALARM" else "was not"
    # Missing periods count only when the treatment judges them (notBreaching, breaching).
    judged = len(values) if treatment in ("notBreaching", "breaching") else len(values) - missing
    counted = breaching if state == "ALARM" else judged - breaching
    return (
        f"Threshold Crossed: {counted} out of the last {judged} datapoints [{', '.join(present)}] "
        f"{verb} {words} the threshold ({rule.threshold:g}) (minimum {rule.datapoints_to_alarm} "
        f"datapoint(s) for {current} -> {state} transition)."
    )


def notification(
    rule: AlarmRule,
    evaluation: Evaluation,
    old_state: State,
    account: str,
    region_name: str,
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """The subject and JSON message CloudWatch publishes to an SNS action on a state change."""
    extended = rule.statistic.startswith("p")
    trigger: dict[str, Any] = {
        "MetricName": rule.metric_name,
        "Namespace": rule.namespace,
        "StatisticType": "ExtendedStatistic" if extended else "Statistic",
        "Statistic": rule.statistic if extended else rule.statistic.upper(),
        "Unit": rule.unit,
        "Dimensions": [{"value": value, "name": name} for name, value in rule.dimensions],
        "Period": rule.period,
        "EvaluationPeriods": rule.evaluation_periods,
        "DatapointsToAlarm": rule.datapoints_to_alarm,
        "ComparisonOperator": rule.comparison,
        "Threshold": rule.threshold,
        "TreatMissingData": rule.treat_missing_data,
        "EvaluateLowSampleCountPercentile": "",
    }
    if extended:
        trigger["ExtendedStatistic"] = trigger.pop("Statistic")
    message = {
        "AlarmName": rule.name,
        "AlarmDescription": rule.description,
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _cw_time(now),
        "NewStateValue": evaluation.state,
        "NewStateReason": evaluation.reason,
        "StateChangeTime": _cw_time(now),
        "Region": region_name,
        "AlarmArn": rule.arn,
        "OldStateValue": old_state,
        "OKActions": list(rule.ok_actions),
        "AlarmActions": list(rule.alarm_actions),
        "InsufficientDataActions": list(rule.insufficient_data_actions),
        "Trigger": trigger,
    }
    # SNS subjects stop at 100 characters:
    # https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
    subject = f'{evaluation.state}: "{rule.name}" in {region_name}'[:100]
    return subject, message


def _cw_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]


class ArrivalLog:
    """Every datapoint moto has stored, stamped with the monotonic time the evaluator first saw it.

    Reads the list moto's CloudWatch backend keeps in this process (the stack and moto share it),
    from where it stopped last time, and indexes it by metric (namespace, name, dimension set).
    """

    def __init__(self, backend_data: Callable[[], list[Any]]) -> None:
        self._backend_data = backend_data
        self._seen = 0
        self.by_metric: dict[MetricKey, list[tuple[float, Sample]]] = {}

    def poll(self, now: float) -> int:
        """Take in what arrived since the last call; returns how many datapoints were new."""
        data = self._backend_data()
        if len(data) < self._seen:  # moto was reset
            self._seen = 0
            self.by_metric.clear()
        fresh = data[self._seen :]
        self._seen = len(data)
        for datum in fresh:
            sample = _sample_of(datum)
            if sample is None:
                continue
            dimensions = tuple(sorted((d.name, d.value) for d in datum.dimensions))
            self.by_metric.setdefault((datum.namespace, datum.name, dimensions), []).append((now, sample))
        return len(fresh)

    def samples(self, rule: AlarmRule, start: float, end: float) -> list[Sample]:
        """The rule's metric's samples that arrived in ``[start, end)``."""
        entries = self.by_metric.get((rule.namespace, rule.metric_name, rule.dimensions), [])
        return [sample for at, sample in entries if start <= at < end]


def _sample_of(datum: Any) -> Sample | None:
    if hasattr(datum, "value"):
        value = float(datum.value)
        return Sample.of(value) if math.isfinite(value) else None
    if hasattr(datum, "sample_count"):
        return Sample(float(datum.sample_count), float(datum.sum), float(datum.min), float(datum.max))
    return None


@dataclass
class Transition:
    """A state change the evaluator made (kept for the console and the demo)."""

    alarm: str
    old: State
    new: State
    reason: str
    at: datetime
    notified: tuple[str, ...]


@dataclass
class AlarmEvaluator:
    """Evaluates every alarm at the end of each local period and runs the actions of a state change.

    Parameters
    ----------
    cloudwatch, sns
        Clients of the local endpoint.
    backend_data
        Returns moto's list of stored datapoints (see :class:`ArrivalLog`).
    account, region, region_name
        For the notification (``region_name`` is the display name SNS messages carry).
    period_s
        Length of every alarm period locally, in seconds.
    on_transition
        Called for each state change, after its actions ran.
    """

    cloudwatch: CloudWatchClient
    sns: SNSClient
    backend_data: Callable[[], list[Any]]
    account: str
    region: str
    region_name: str
    period_s: float = 10.0
    tick_s: float = 0.25
    on_transition: Callable[[Transition], None] | None = None
    transitions: list[Transition] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arrivals = ArrivalLog(self.backend_data)
        self._started = time.monotonic()
        self._evaluated_period = -1
        self._initialised: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Evaluate in a background thread until :meth:`stop`."""
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="alarm-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def period_index(self, now: float | None = None) -> int:
        """Index of the local period that contains ``now`` (0 is the first after start)."""
        moment = time.monotonic() if now is None else now
        return int((moment - self._started) // self.period_s)

    def seconds_into_period(self, now: float | None = None) -> float:
        """How far ``now`` is into its local period."""
        moment = time.monotonic() if now is None else now
        return (moment - self._started) % self.period_s

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick(time.monotonic())
            except Exception:
                # One failed tick (moto busy, a malformed alarm) must not stop local alarms for good.
                logger.exception("alarm evaluation failed")

    def tick(self, now: float) -> list[Transition]:
        """Take in new datapoints and, when a period has just ended, evaluate every alarm."""
        with self._lock:
            self.arrivals.poll(now)
            last_complete = self.period_index(now) - 1
            if last_complete <= self._evaluated_period:
                return []
            self._evaluated_period = last_complete
            return self._evaluate_all(last_complete)

    def _evaluate_all(self, last_complete: int) -> list[Transition]:
        made: list[Transition] = []
        for alarm in self._alarms():
            try:
                rule = AlarmRule.from_alarm(alarm)
            except ValueError as exc:
                if alarm["AlarmName"] not in self.skipped:
                    self.skipped[alarm["AlarmName"]] = str(exc)
                    logger.warning("alarm not evaluated locally: %s", exc)
                continue
            transition = self._evaluate_one(rule, alarm["StateValue"], last_complete)
            if transition is not None:
                made.append(transition)
        return made

    def _alarms(self) -> Iterable[MetricAlarmTypeDef]:
        for page in self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            yield from page.get("MetricAlarms", [])

    def _evaluate_one(self, rule: AlarmRule, current: State, last_complete: int) -> Transition | None:
        first = last_complete - rule.evaluation_periods + 1
        values: list[float | None] = []
        starts: list[datetime] = []
        wall, clock = datetime.now(tz=UTC), time.monotonic()
        for index in range(first, last_complete + 1):
            start = self._started + index * self.period_s
            samples = self.arrivals.samples(rule, start, start + self.period_s) if index >= 0 else []
            values.append(statistic(samples, rule.statistic))
            starts.append(wall - timedelta(seconds=clock - start))

        outcome = evaluate(rule, values, current, starts)
        silent = rule.name not in self._initialised
        self._initialised.add(rule.name)
        if outcome.state == current:
            return None

        now = datetime.now(tz=UTC)
        reason_data = {
            "version": "1.0",
            "queryDate": _cw_time(now),
            "statistic": rule.statistic,
            "period": rule.period,
            "recentDatapoints": [v for v in values if v is not None],
            "threshold": rule.threshold,
            "evaluatedDatapoints": [
                {"timestamp": _cw_time(at), "value": v}
                for v, at in reversed(list(zip(values, starts, strict=True)))
                if v is not None
            ],
        }
        self.cloudwatch.set_alarm_state(
            AlarmName=rule.name,
            StateValue=outcome.state,
            StateReason=outcome.reason[:1023],
            StateReasonData=json.dumps(reason_data),
        )
        notified = () if silent else self._notify(rule, outcome, current, now)
        transition = Transition(rule.name, current, outcome.state, outcome.reason, now, notified)
        if not silent:
            self.transitions.append(transition)
            if self.on_transition is not None:
                self.on_transition(transition)
        return None if silent else transition

    def _notify(self, rule: AlarmRule, outcome: Evaluation, old: State, now: datetime) -> tuple[str, ...]:
        subject, message = notification(rule, outcome, old, self.account, self.region_name, now)
        sent: list[str] = []
        for action in rule.actions_for(outcome.state):
            if not action.startswith("arn:aws:sns:"):
                logger.warning("alarm action is not an SNS topic; not run locally: %s", action)
                continue
            self.sns.publish(TopicArn=action, Subject=subject, Message=json.dumps(message))
            sent.append(action)
        return tuple(sent)
