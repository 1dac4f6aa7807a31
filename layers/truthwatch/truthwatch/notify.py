"""Send the alarm email: settings, recent datapoints (GetMetricData), SES v2, one email per change.

:class:`AlarmNotifier` is what the alarm function calls. For every alarm change (or plain notice) in
an event it fetches the metric's recent datapoints, renders the email (:mod:`truthwatch.email`) and
sends it through SES v2 as a raw MIME message with a plain-text and an HTML part.

Failure policy
--------------
- Sending fails: the error propagates, the invocation fails and Lambda retries; after the retries
  the event goes to the function's on-failure destination. No alarm is dropped silently.
- GetMetricData fails: the email still goes out, saying the datapoints could not be read; an alarm
  email without a table is worth more than no email.
- The same state change delivered twice (SNS and Lambda retries, or the same change arriving by SNS
  and by EventBridge) sends one email: Powertools idempotency, keyed on alarm ARN, new state and
  state-change time, in the ``IDEMPOTENCY_TABLE``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from botocore.exceptions import BotoCoreError, ClientError

from truthwatch.alarms import AlarmChange, Datapoint, MetricQuery, Notice, Parsed, parse_event
from truthwatch.email import (
    HEADLINES,
    RecentData,
    RenderedEmail,
    Series,
    body_text,
    console_links,
    header_text,
    render_alarm,
    render_notice,
)
from truthwatch.errors import TruthwatchError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.literals import StandardUnitType
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef, MetricStatTypeDef
    from mypy_boto3_sesv2 import SESV2Client

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
"""SES accepts at most 50 recipients per message (SES quotas, "Recipients per message")."""

HISTORY_PERIODS = 24
"""Periods of history fetched for the datapoints table, ending at the state change."""

IDEMPOTENCY_SECONDS = 2 * 24 * 3600
"""How long a sent change is remembered; Lambda keeps retrying asynchronous events for up to 6 hours."""

IDEMPOTENCY_KEY_PREFIX = "alarm-email"

# CRLF line ends as SMTP wants, but headers folded only past RFC 5322's hard 998-character limit:
# at the default 78, Python moves a long unbreakable subject to a continuation line, which some
# clients then show with a leading space.
_MIME_POLICY = SMTP.clone(max_line_length=998)

# GetMetricData ids must start with a lower-case letter; alarm actions name metrics by UUID.
_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


class ConfigurationError(TruthwatchError, ValueError):
    """A required environment variable is missing or malformed; the message names it."""


class DeliveryError(TruthwatchError, RuntimeError):
    """SES refused or failed to send; raised so the invocation fails and Lambda retries."""


@dataclass(frozen=True)
class AlarmSettings:
    """What the alarm function reads from its environment (docs/contracts.md)."""

    recipients: tuple[str, ...]
    sender: str
    idempotency_table: str
    data_bucket: str | None = None
    dashboard_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AlarmSettings:
        """Read ``ALERT_EMAIL``, ``SENDER_EMAIL``, ``IDEMPOTENCY_TABLE``, ``DATA_BUCKET``, ``DASHBOARD_NAME``.

        The last two only feed links: without them the email leaves that link out rather than
        failing, because a missing link must never cost the alarm its email.

        Raises
        ------
        ConfigurationError
            Naming the variable that is missing or holds something other than addresses.
        """

        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"environment variable {name} is required and is not set")
            return value

        sender = required("SENDER_EMAIL")
        if not _is_address(sender):
            raise ConfigurationError(f"SENDER_EMAIL must be one email address, received {sender!r}")
        return cls(
            recipients=parse_recipients(required("ALERT_EMAIL")),
            sender=sender,
            idempotency_table=required("IDEMPOTENCY_TABLE"),
            data_bucket=environ.get("DATA_BUCKET", "").strip() or None,
            dashboard_name=environ.get("DASHBOARD_NAME", "").strip() or None,
        )


def parse_recipients(text: str) -> tuple[str, ...]:
    """Split ``ALERT_EMAIL`` (one address or a comma-separated list) into distinct addresses.

    Raises
    ------
    ConfigurationError
        When an entry is not an address, none is given, or there are more than SES takes at once.
    """
    addresses: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if not _is_address(entry):
            raise ConfigurationError(
                f"ALERT_EMAIL holds {entry!r}, which is not an email address; "
                "expected one address or a comma-separated list"
            )
        if entry.lower() not in (a.lower() for a in addresses):
            addresses.append(entry)
    if not addresses:
        raise ConfigurationError("ALERT_EMAIL holds no email address")
    if len(addresses) > MAX_RECIPIENTS:
        raise ConfigurationError(
            f"ALERT_EMAIL lists {len(addresses)} addresses; SES sends to at most {MAX_RECIPIENTS} "
            "per message (use a distribution list)"
        )
    return tuple(addresses)


def _is_address(text: str) -> bool:
    name, address = parseaddr(text)
    local, _, domain = address.partition("@")
    return bool(local) and "." in domain and not name and address == text and " " not in text


def fetch_recent(
    cloudwatch: CloudWatchClient, change: AlarmChange, periods: int = HISTORY_PERIODS
) -> RecentData:
    """The recent datapoints of every metric and expression the alarm reads, newest first.

    The anomaly-detection band itself is not fetched (its bounds at the change are in the reason),
    and a composite alarm has no metric of its own. A failing call returns the reason instead of
    raising: the email goes out without the table.
    """
    if change.is_composite:
        return RecentData(problem="a composite alarm has no metric of its own; see the alarms it names")

    queries, names = _metric_data_queries(change)
    if not queries:
        return RecentData(problem="the alarm names no metric that GetMetricData can read")

    period = max((q.period or 0) for q in change.queries) or 300
    # Whole periods aligned to the epoch, the way the alarm evaluated them; the last one holds
    # the state change.
    changed = int(change.changed_at.timestamp())
    end = datetime.fromtimestamp(changed - changed % period + period, tz=UTC)
    start = end - timedelta(seconds=period * periods)
    try:
        found = _get_metric_data(cloudwatch, queries, start, end)
    except (ClientError, BotoCoreError) as error:
        logger.warning(
            "GetMetricData failed; sending the email without datapoints",
            extra={"alarm_name": change.alarm_name, "error": str(error)},
        )
        return RecentData(problem=f"could not be read ({_error_code(error)})")

    series = tuple(
        Series(query_id=original, title=title, points=tuple(found.get(sent_id, ())))
        for sent_id, (original, title) in names.items()
    )
    return RecentData(series=series)


def _metric_data_queries(
    change: AlarmChange,
) -> tuple[list[MetricDataQueryTypeDef], dict[str, tuple[str, str]]]:
    """The GetMetricData queries, and for each id sent the alarm's own id and the series title."""
    usable = [q for q in change.queries if q.id != change.threshold_metric_id]
    if change.is_anomaly_band:
        usable = [q for q in usable if not q.expression]
    if any(not _QUERY_ID.match(q.id) for q in usable):
        # Ids we must rename cannot stay referenced by expressions, so only metrics survive.
        usable = [q for q in usable if q.metric_name]

    watched = change.watched
    usable.sort(key=lambda q: 0 if watched and q.id == watched.id else 1)
    queries: list[MetricDataQueryTypeDef] = []
    names: dict[str, tuple[str, str]] = {}
    for index, query in enumerate(usable):
        sent_id = query.id if _QUERY_ID.match(query.id) else f"q{index}"
        built = _one_query(sent_id, query)
        if built is not None:
            queries.append(built)
            names[sent_id] = (query.id, query.title)
    return queries, names


def _one_query(sent_id: str, query: MetricQuery) -> MetricDataQueryTypeDef | None:
    if query.expression:
        expression: MetricDataQueryTypeDef = {
            "Id": sent_id,
            "Expression": query.expression,
            "ReturnData": True,
        }
        if query.period:
            expression["Period"] = query.period
        return expression
    if not (query.namespace and query.metric_name and query.period and query.stat):
        return None

    stat: MetricStatTypeDef = {
        "Metric": {
            "Namespace": query.namespace,
            "MetricName": query.metric_name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in query.dimensions],
        },
        "Period": query.period,
        "Stat": query.stat,
    }
    if query.unit:
        stat["Unit"] = cast("StandardUnitType", query.unit)
    return {"Id": sent_id, "MetricStat": stat, "ReturnData": True}


def _get_metric_data(
    cloudwatch: CloudWatchClient, queries: list[MetricDataQueryTypeDef], start: datetime, end: datetime
) -> dict[str, list[Datapoint]]:
    found: dict[str, list[Datapoint]] = {}
    paginator = cloudwatch.get_paginator("get_metric_data")
    pages = paginator.paginate(
        MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"
    )
    for page in pages:
        for result in page.get("MetricDataResults", []):
            points = found.setdefault(result["Id"], [])
            for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                if math.isfinite(value):
                    points.append(Datapoint(stamp.astimezone(UTC), float(value)))
    return found


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def build_message(
    email: RenderedEmail, *, sender: str, recipients: Sequence[str], headers: Mapping[str, str]
) -> bytes:
    """A multipart/alternative MIME message (text first, HTML preferred), as bytes for SES."""
    message = EmailMessage()
    message["Subject"] = header_text(email.subject)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    # Values from the event (the alarm name) are cleaned, not refused: a CR or LF in one used to
    # raise ValueError and a lone surrogate UnicodeEncodeError, on every retry, and no email went.
    for name, value in headers.items():
        message[name] = header_text(value)
    message.set_content(body_text(email.text), charset="utf-8")
    message.add_alternative(body_text(email.html), subtype="html", charset="utf-8")
    return message.as_bytes(policy=_MIME_POLICY)


def send_email(
    ses: SESV2Client, settings: AlarmSettings, email: RenderedEmail, headers: Mapping[str, str]
) -> str:
    """Send one rendered email through SES v2 and return its message id.

    Raises
    ------
    DeliveryError
        When SES refuses or the call fails, so the invocation fails and is retried.
    """
    raw = build_message(email, sender=settings.sender, recipients=settings.recipients, headers=headers)
    try:
        # A raw message carries its recipients in its To header; SES sends to those.
        response = ses.send_email(FromEmailAddress=settings.sender, Content={"Raw": {"Data": raw}})
    except (ClientError, BotoCoreError) as error:
        raise DeliveryError(f"SES did not send {email.subject!r}: {_error_code(error)}: {error}") from error
    return str(response["MessageId"])


@dataclass
class AlarmNotifier:
    """Turn an alarm function event into emails, one per state change, however often it arrives.

    Parameters
    ----------
    settings
        Recipients, sender, table, bucket and dashboard names.
    ses, cloudwatch
        boto3 clients (``sesv2``, ``cloudwatch``), built by the caller so tests hand in moto ones.
    persistence
        Where sent changes are remembered; ``None`` switches duplicate suppression off (tests of
        rendering only).
    """

    settings: AlarmSettings
    ses: SESV2Client
    cloudwatch: CloudWatchClient
    persistence: BasePersistenceLayer | None
    config: IdempotencyConfig = field(init=False)
    _duplicates: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.config = IdempotencyConfig(
            expires_after_seconds=IDEMPOTENCY_SECONDS,
            use_local_cache=True,
            response_hook=self._on_duplicate,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AlarmNotifier:
        """Settings from the environment, boto3 clients for the function's region."""
        import boto3  # imported here so rendering-only users of the package never pay for it

        settings = AlarmSettings.from_env(environ)
        return cls(
            settings=settings,
            ses=boto3.client("sesv2"),
            cloudwatch=boto3.client("cloudwatch"),
            persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        )

    def handle(self, event: Mapping[str, Any], context: LambdaContext | None = None) -> dict[str, int]:
        """Send one email per change or notice in ``event``; count what was sent and what was a repeat.

        Raises
        ------
        AlarmEventError
            When the event is not an accepted shape.
        DeliveryError
            When SES fails; changes already sent stay recorded, so the retry sends only the rest.
        """
        items = parse_event(event)
        if context is not None:
            self.config.register_lambda_context(context)

        sent = duplicates = 0
        for item in items:
            self._duplicates = 0
            self._deliver_once(item)
            duplicates += self._duplicates
            sent += 1 - self._duplicates
        return {"received": len(items), "sent": sent, "duplicates": duplicates}

    def render(self, item: Parsed) -> RenderedEmail:
        """The email for one change (with its recent datapoints) or one notice."""
        if isinstance(item, Notice):
            return render_notice(item)
        recent = fetch_recent(self.cloudwatch, item)
        links = console_links(
            item, dashboard_name=self.settings.dashboard_name, data_bucket=self.settings.data_bucket
        )
        return render_alarm(item, recent, links)

    def _deliver_once(self, item: Parsed) -> dict[str, str]:
        if self.persistence is None:
            return self._deliver(key=item.idempotency_key, item=item)
        once = idempotent_function(
            self._deliver,
            data_keyword_argument="key",
            persistence_store=self.persistence,
            config=self.config,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )
        result: dict[str, str] = once(key=item.idempotency_key, item=item)
        return result

    def _deliver(self, *, key: dict[str, str], item: Parsed) -> dict[str, str]:
        email = self.render(item)
        headers = _headers(item)
        message_id = send_email(self.ses, self.settings, email, headers)
        logger.info(
            "Alarm email sent",
            extra={
                **key,
                "kind": "notice" if isinstance(item, Notice) else item.transition,
                "message_id": message_id,
                "recipients": len(self.settings.recipients),
            },
        )
        return {"message_id": message_id}

    def _on_duplicate(self, response: Any, idempotent_data: DataRecord) -> Any:
        self._duplicates = 1
        logger.info(
            "Duplicate delivery; email already sent",
            extra={"idempotency_key": idempotent_data.idempotency_key, "status": idempotent_data.status},
        )
        return response


def _headers(item: Parsed) -> dict[str, str]:
    if isinstance(item, Notice):
        return {"X-Truthwatch-Kind": "notice"}
    return {
        "X-Truthwatch-Kind": "alarm",
        "X-Truthwatch-Alarm": item.alarm_name,
        "X-Truthwatch-State": f"{item.new_state} ({HEADLINES[item.transition].lower()})",
    }
