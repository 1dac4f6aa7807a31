"""Turning S3, SNS, SQS and EventBridge events into the label objects to process."""

from __future__ import annotations

import json

import pytest

from tests.events import load_event
from truthwatch.notifications import LabelObject, deliveries


def test_notifications_decode_s3_keys_exactly_once() -> None:
    [delivery] = deliveries(load_event("s3-object-created-labels"))

    assert delivery.objects == [
        LabelObject(
            bucket="truthwatch-data-123456789012",
            key="labels/2024-06-03/déjà vu+batch.csv",
            etag="d41d8cd98f00b204e9800998ecf8427e",
            size=1024,
        )
    ]


def test_notifications_key_with_an_encoded_percent_is_not_decoded_twice() -> None:
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"]["key"] = "labels/100%252B.csv"

    [delivery] = deliveries(event)

    assert delivery.objects[0].key == "labels/100%2B.csv"


def test_notifications_skip_markers_empty_objects_and_test_events() -> None:
    [multi] = deliveries(load_event("s3-multi-record-labels"))
    [test] = deliveries(load_event("s3-test-event"))

    assert [o.key for o in multi.objects] == ["labels/part-1.jsonl", "labels/part-2.csv.gz"]
    assert multi.skipped == ["folder marker", "zero-byte object"]
    assert (test.objects, test.skipped) == ([], ["s3:TestEvent"])


def test_notifications_sqs_messages_are_separate_deliveries() -> None:
    event = load_event("sqs-s3-labels")

    first, second = deliveries(event)

    assert first.message_id == event["Records"][0]["messageId"]
    assert [o.key for o in first.objects] == ["labels/2024-06-03/déjà vu+batch.csv"]
    assert (second.objects, second.skipped) == ([], ["s3:TestEvent"])


def test_notifications_sns_inside_sqs_is_unwrapped() -> None:
    sns = load_event("sns-s3-labels")["Records"][0]["Sns"]
    event = load_event("sqs-s3-labels")
    event["Records"] = event["Records"][:1]
    event["Records"][0]["body"] = json.dumps(sns)

    [delivery] = deliveries(event)

    assert [o.key for o in delivery.objects] == ["labels/2024-06-03/déjà vu+batch.csv"]


def test_notifications_eventbridge_object_created() -> None:
    [delivery] = deliveries(load_event("eventbridge-s3-object-created-labels"))

    assert delivery.objects == [
        LabelObject(
            bucket="truthwatch-data-123456789012",
            key="labels/2024-06-03/sagemaker ground+truth.jsonl",
            etag="b1946ac92492d2347c6235b4d2611184",
            size=2048,
        )
    ]


def test_notifications_other_events_and_prefixes_are_skipped_with_a_reason() -> None:
    removed = load_event("s3-object-created-labels")
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    outside = load_event("s3-object-created-labels")
    outside["Records"][0]["s3"]["object"]["key"] = "reports/x.json"

    assert deliveries(removed)[0].skipped == ["event ObjectRemoved:Delete"]
    assert deliveries(outside)[0].skipped == ["key outside labels/"]
    assert deliveries({"hello": "world"})[0].skipped == ["not an S3, SNS, SQS or EventBridge notification"]


def test_notifications_identity_prefers_version_id_over_etag() -> None:
    versioned = LabelObject("b", "labels/a.csv", version_id="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", etag="abc")

    assert versioned.identity() == {
        "bucket": "b",
        "key": "labels/a.csv",
        "version": "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
    }
    assert LabelObject("b", "labels/a.csv", etag="abc").identity()["version"] == "abc"


def test_notifications_a_damaged_record_is_skipped_with_its_reason_and_the_others_read() -> None:
    event = load_event("s3-multi-record-labels")
    del event["Records"][0]["s3"]["bucket"]
    event["Records"][1]["s3"]["object"]["eTag"] = 12345  # not text: not carried as an ETag

    [delivery] = deliveries(event)

    assert delivery.skipped[0].startswith("malformed S3 record (KeyError")
    assert [o.key for o in delivery.objects] == ["labels/part-2.csv.gz"]
    assert delivery.objects[0].etag is None


def test_notifications_a_damaged_sqs_message_is_its_own_skipped_delivery() -> None:
    event = load_event("sqs-s3-labels")
    message = json.loads(event["Records"][0]["body"])
    message["Records"][0]["s3"]["object"]["key"] = ["not", "a", "key"]
    event["Records"][1]["body"] = json.dumps(message)
    event["Records"][0]["body"] = None

    first, second = deliveries(event)

    assert first.message_id == event["Records"][0]["messageId"]
    assert (first.objects, first.skipped) == ([], ["message is not a JSON object"])
    assert (second.objects, second.skipped) == ([], ["malformed notification: no bucket name or object key"])


@pytest.mark.parametrize(("event", "kind"), [([1, 2], "list"), ("labels/x.csv", "str"), (None, "NoneType")])
def test_notifications_an_event_that_is_not_a_json_object_is_skipped_with_the_reason(
    event: object, kind: str
) -> None:
    [delivery] = deliveries(event)  # type: ignore[arg-type]

    assert (delivery.objects, delivery.skipped) == ([], [f"event is not a JSON object (a {kind})"])


def test_notifications_a_message_nested_too_deeply_is_skipped_not_raised() -> None:
    event = load_event("sqs-s3-labels")
    event["Records"][1]["body"] = "[" * 100_000 + "]" * 100_000

    first, second = deliveries(event)

    assert [o.key for o in first.objects] == ["labels/2024-06-03/déjà vu+batch.csv"]
    assert (second.objects, second.skipped) == ([], ["message is not a JSON object"])
