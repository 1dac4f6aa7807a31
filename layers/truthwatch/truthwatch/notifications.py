"""Turn the ways an S3 upload can reach the metrics function into the label objects to process.

Accepted: S3 event notifications, the same wrapped in SNS, in SQS, or in SNS inside SQS, and
EventBridge "Object Created" events. Keys arrive URL-encoded (``+`` for a space) and are decoded
exactly once. Acknowledged and skipped, with the reason: ``s3:TestEvent`` messages, events other
than object creation, zero-byte objects, folder markers (keys ending in ``/``), keys outside
``labels/``, and damaged notifications (a field missing or of the wrong type, a message that is not
JSON, an event that is not a JSON object): one bad record is skipped with its reason and the others
are still read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SNSEvent, SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent

LABELS_PREFIX = "labels/"

_DAMAGE = (KeyError, TypeError, AttributeError, ValueError)
"""What Powertools' event classes raise on a missing or mistyped field: they index the dict on access."""


@dataclass(frozen=True)
class LabelObject:
    """One uploaded object, as named by its notification."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None

    def identity(self) -> dict[str, str]:
        """What makes two deliveries the same upload: bucket, key, and version id or else ETag."""
        return {"bucket": self.bucket, "key": self.key, "version": self.version_id or self.etag or ""}


@dataclass
class Delivery:
    """The objects of one unit that succeeds or fails together: an SQS message, or the whole event.

    ``message_id`` is the SQS message id, for a partial batch failure; None otherwise.
    """

    message_id: str | None = None
    objects: list[LabelObject] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def deliveries(event: dict[str, Any]) -> list[Delivery]:
    """Split an invocation event into deliveries of label objects (see the module docstring).

    An event that is not a JSON object (a list, a string: a hand-made test invocation) is one
    delivery skipped with the reason, like any other damaged notification.
    """
    if not isinstance(event, dict):
        return [Delivery(skipped=[f"event is not a JSON object (a {type(event).__name__})"])]
    records = event.get("Records")
    if isinstance(records, list) and records and _source(records[0]) == "aws:sqs":
        out = []
        for raw in records:
            delivery = Delivery(
                message_id=_optional_text(raw.get("messageId")) if isinstance(raw, dict) else None
            )
            _guarded("SQS message", delivery, partial(_sqs_record, raw, delivery))
            out.append(delivery)
        return out

    delivery = Delivery()
    _collect(event, delivery)
    return [delivery]


def _source(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    return str(record.get("eventSource") or record.get("EventSource") or "")


def _json(text: Any) -> Any:
    if not isinstance(text, str | bytes):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        return None


def _guarded(kind: str, delivery: Delivery, read: Callable[[], None]) -> None:
    """Run ``read``; a damaged record becomes a skip reason instead of failing the whole event."""
    try:
        read()
    except _DAMAGE as exc:
        delivery.skipped.append(f"malformed {kind} ({type(exc).__name__}: {str(exc)[:100]})")


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _collect(message: Any, delivery: Delivery) -> None:
    if not isinstance(message, dict):
        delivery.skipped.append("message is not a JSON object")
        return
    if message.get("Event") == "s3:TestEvent":
        delivery.skipped.append("s3:TestEvent")
        return
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        _collect(_json(message["Message"]), delivery)
        return
    if message.get("source") == "aws.s3" and "detail-type" in message:
        _guarded("EventBridge event", delivery, partial(_eventbridge, message, delivery))
        return

    records = message.get("Records")
    if not isinstance(records, list) or not records:
        delivery.skipped.append("not an S3, SNS, SQS or EventBridge notification")
        return
    for record in records:
        source = _source(record)
        if source == "aws:s3":
            _guarded("S3 record", delivery, partial(_s3_record, record, delivery))
        elif source == "aws:sns":
            _guarded("SNS record", delivery, partial(_sns_record, record, delivery))
        elif source == "aws:sqs":
            _guarded("SQS record", delivery, partial(_sqs_record, record, delivery))
        else:
            delivery.skipped.append(f"record from {source or 'an unknown source'}")


def _sqs_record(record: Any, delivery: Delivery) -> None:
    for sqs_record in SQSEvent({"Records": [record]}).records:
        _collect(_json(sqs_record.body), delivery)


def _sns_record(record: Any, delivery: Delivery) -> None:
    for sns_record in SNSEvent({"Records": [record]}).records:
        _collect(_json(sns_record.sns.message), delivery)


def _s3_record(record: Any, delivery: Delivery) -> None:
    for s3_record in S3Event({"Records": [record]}).records:
        event_name = s3_record.event_name
        if not isinstance(event_name, str) or not event_name.startswith("ObjectCreated:"):
            delivery.skipped.append(f"event {event_name}")
            continue
        obj = s3_record.s3.get_object
        key = obj.key
        # S3Object.key is the key as sent, URL-encoded; decode it here, once.
        _keep(
            s3_record.s3.bucket.name,
            unquote_plus(key) if isinstance(key, str) else key,
            obj.get("versionId"),
            obj.get("eTag"),
            obj.get("size"),
            delivery,
        )


def _size(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _eventbridge(message: dict[str, Any], delivery: Delivery) -> None:
    event = S3EventBridgeNotificationEvent(message)
    if event.detail_type != "Object Created":
        delivery.skipped.append(f"EventBridge {event.detail_type}")
        return
    detail = event.detail
    # Powertools decodes this key (unquote_plus) itself, so it is used as it comes.
    _keep(
        detail.bucket.name,
        detail.object.key,
        detail.object.get("version-id"),
        detail.object.get("etag"),
        detail.object.get("size"),
        delivery,
    )


def _keep(bucket: Any, key: Any, version_id: Any, etag: Any, size: Any, delivery: Delivery) -> None:
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        delivery.skipped.append("malformed notification: no bucket name or object key")
        return
    obj = LabelObject(bucket, key, _optional_text(version_id), _optional_text(etag), _size(size))
    if obj.key.endswith("/"):
        delivery.skipped.append("folder marker")
    elif obj.size == 0:
        delivery.skipped.append("zero-byte object")
    elif not obj.key.startswith(LABELS_PREFIX):
        delivery.skipped.append(f"key outside {LABELS_PREFIX}")
    else:
        delivery.objects.append(obj)


def all_objects(items: list[Delivery]) -> Iterator[LabelObject]:
    """Every label object of every delivery, in order."""
    for delivery in items:
        yield from delivery.objects
