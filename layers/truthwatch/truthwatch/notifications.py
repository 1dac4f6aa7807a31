"""Turn the ways an S3 upload can reach the metrics function into the label objects to process.

Accepted: S3 event notifications, the same wrapped in SNS, in SQS, or in SNS inside SQS, and
EventBridge "Object Created" events. Keys arrive URL-encoded (``+`` for a space) and are decoded
exactly once. Acknowledged and skipped, with the reason: ``s3:TestEvent`` messages, events other
than object creation, zero-byte objects, folder markers (keys ending in ``/``) and keys outside
``labels/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SNSEvent, SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent

LABELS_PREFIX = "labels/"


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
    """Split an invocation event into deliveries of label objects (see the module docstring)."""
    records = event.get("Records")
    if isinstance(records, list) and records and _source(records[0]) == "aws:sqs":
        out = []
        for record in SQSEvent(event).records:
            delivery = Delivery(message_id=record.message_id)
            _collect(_json(record.body), delivery)
            out.append(delivery)
        return out

    delivery = Delivery()
    _collect(event, delivery)
    return [delivery]


def _source(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    return str(record.get("eventSource") or record.get("EventSource") or "")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


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
        _eventbridge(message, delivery)
        return

    records = message.get("Records")
    if not isinstance(records, list) or not records:
        delivery.skipped.append("not an S3, SNS, SQS or EventBridge notification")
        return
    for record in records:
        source = _source(record)
        if source == "aws:s3":
            _s3_record(record, delivery)
        elif source == "aws:sns":
            for sns_record in SNSEvent({"Records": [record]}).records:
                _collect(_json(sns_record.sns.message), delivery)
        elif source == "aws:sqs":
            for sqs_record in SQSEvent({"Records": [record]}).records:
                _collect(_json(sqs_record.body), delivery)
        else:
            delivery.skipped.append(f"record from {source or 'an unknown source'}")


def _s3_record(record: dict[str, Any], delivery: Delivery) -> None:
    for s3_record in S3Event({"Records": [record]}).records:
        if not s3_record.event_name.startswith("ObjectCreated:"):
            delivery.skipped.append(f"event {s3_record.event_name}")
            continue
        obj = s3_record.s3.get_object
        # S3Object.key is the key as sent, URL-encoded; decode it here, once.
        _keep(
            LabelObject(
                bucket=s3_record.s3.bucket.name,
                key=unquote_plus(obj.key),
                version_id=obj.version_id or None,
                etag=obj.etag or None,
                size=_size(obj.get("size")),
            ),
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
        LabelObject(
            bucket=detail.bucket.name,
            key=detail.object.key,
            version_id=detail.object.get("version-id") or None,
            etag=detail.object.get("etag") or None,
            size=detail.object.size,
        ),
        delivery,
    )


def _keep(obj: LabelObject, delivery: Delivery) -> None:
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
