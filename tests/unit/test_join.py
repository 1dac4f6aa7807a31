"""Joining label rows to recorded predictions: every row in exactly one bucket."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from truthwatch.baseline import build_baseline
from truthwatch.card import HeldoutMetrics, InputSpec, ModelCard, TrainingData
from truthwatch.join import (
    DynamoDBPredictionStore,
    InMemoryPredictionStore,
    StoreUnavailableError,
    collect_labels,
    columns_from_items,
    columns_from_records,
    join_labels,
    read_labels,
)
from truthwatch.label_job import hourly_counts
from truthwatch.labels import LabelBatch, parse_label_stream
from truthwatch.records import PredictionRecord, encode_inputs

T0 = datetime(2024, 6, 3, 9, 30, tzinfo=UTC)


def small_card(n_features: int = 4, n_classes: int = 3, seed: int = 0) -> ModelCard:
    """A valid card for a tiny model, with a baseline from uniform data in 0..16."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 16, size=(600, n_features))
    y = rng.integers(0, n_classes, size=600)
    names = tuple(f"f{i}" for i in range(n_features))
    classes = tuple(str(i) for i in range(n_classes))
    return ModelCard(
        name="tiny",
        version="0123456789ab",
        created="2024-06-01T00:00:00Z",
        framework={"keras": "3"},
        preprocessing="x / 16",
        input=InputSpec(shape=(n_features,), feature_names=names, value_range=(0.0, 16.0)),
        class_names=classes,
        training_data=TrainingData(
            source="test",
            rows=750,
            train_rows=600,
            heldout_rows=150,
            heldout_fraction=0.2,
            seed=seed,
            fingerprint="0",
        ),
        heldout_metrics=HeldoutMetrics(
            rows=150, accuracy=0.9, precision_macro=0.9, recall_macro=0.9, f1_macro=0.9, recall_per_class={}
        ),
        baseline=build_baseline(x, y, names, n_classes),
        files={},
    )


def make_record(
    card: ModelCard, inference_id: str, predicted: int, at: datetime, mode: str = "binned"
) -> PredictionRecord:
    """A record predicting ``predicted`` with probability 0.7, inputs captured as ``mode``."""
    k = len(card.class_names)
    probabilities = np.full(k, 0.3 / (k - 1))
    probabilities[predicted] = 0.7
    row = np.full((1, card.n_features), 8.0, dtype=np.float32)
    inputs = encode_inputs(row, mode, card)[0]  # type: ignore[arg-type]
    return PredictionRecord(
        inference_id=inference_id,
        model_name=card.name,
        model_version=card.version,
        predicted_at=at,
        label=card.class_names[predicted],
        label_index=predicted,
        confidence=0.7,
        probabilities=tuple(float(p) for p in probabilities),
        inputs_mode=mode,  # type: ignore[arg-type]
        inputs=inputs,
        expires_at=0,
    )


def _buckets(counts: dict[str, Any]) -> dict[str, int]:
    return {k: counts[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")}


def test_join_messy_file_counts_add_up_to_rows_read() -> None:
    card = small_card()
    store = InMemoryPredictionStore(
        {f"p{i}": make_record(card, f"p{i}", i % 3, T0) for i in range(10)}, batch_size=3
    )
    text = "\n".join(
        [
            "id,label",
            "p0,0",
            "p1,1",
            "p2,2",
            "p0,1",  # p0 again: the later label wins
            "p3,cat",  # unknown label: rejected after the join
            "p4,",
            "p5",  # missing label, missing field
            "ghost-1,1",
            "ghost-2,2",  # never recorded
            "",
            "p6,2.0",
            "p7, 1 ",
        ]
    )

    result = join_labels(
        collect_labels(parse_label_stream(io.BytesIO(text.encode()))), store, lambda n, v: card
    )

    counts = result.accounting()
    assert {k: counts[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")} == {
        "read": 11,
        "matched": 5,
        "unknown": 2,
        "rejected": 3,
        "duplicate": 1,
    }
    assert counts["balanced"] is True
    assert sorted(r.reason.split(" ")[0] for r in result.rejected) == ["missing", "row", "unknown"]
    matched = result.versions[("tiny", "0123456789ab")]
    assert matched.y_true.tolist() == [1, 1, 2, 2, 1]  # p0 joins with its later label, 1
    assert matched.y_pred.tolist() == [0, 1, 2, 0, 1]
    assert counts["duplicate_rows_overridden"] == [2]
    assert sorted(counts["unknown_examples"]) == ["ghost-1", "ghost-2"]


def test_join_rows_of_a_version_without_a_card_are_rejected() -> None:
    card = small_card()
    store = InMemoryPredictionStore({"p0": make_record(card, "p0", 0, T0)})

    result = join_labels(
        collect_labels(parse_label_stream(io.BytesIO(b"id,label\np0,0\n"))), store, lambda n, v: None
    )

    assert result.versions == {}
    assert [r.reason for r in result.rejected] == ["no model card for tiny/0123456789ab"]


def test_join_bins_raw_captures_like_binned_ones_and_counts_rows_without_inputs() -> None:
    card = small_card()
    records = {
        "b": make_record(card, "b", 0, T0, "binned"),
        "r": make_record(card, "r", 1, T0, "raw"),
        "n": make_record(card, "n", 2, T0, "none"),
    }

    result = join_labels(
        collect_labels(parse_label_stream(io.BytesIO(b"id,label\nb,0\nr,1\nn,2\n"))),
        InMemoryPredictionStore(records),
        lambda n, v: card,
    )

    matched = result.versions[("tiny", "0123456789ab")]
    assert matched.bins.shape == (2, 4)
    assert matched.bins[0].tolist() == matched.bins[1].tolist()
    assert matched.rows_without_inputs == 1


def test_join_counts_rows_per_prediction_hour_in_one_pass() -> None:
    card = small_card()
    times = [T0, T0 + timedelta(minutes=20), T0 + timedelta(hours=1), T0 - timedelta(days=1)]
    records = {f"p{i}": make_record(card, f"p{i}", i % 2, at) for i, at in enumerate(times)}
    records["n"] = make_record(card, "n", 0, T0, "none")
    text = "id,label\n" + "".join(f"p{i},0\n" for i in range(4)) + "n,1\n"

    matched = join_labels(
        read_labels(io.BytesIO(text.encode())), InMemoryPredictionStore(records), lambda n, v: card
    ).versions[("tiny", "0123456789ab")]
    hourly = hourly_counts(matched)

    assert [datetime.fromtimestamp(h * 3600, UTC).hour for h in hourly.hours.tolist()] == [9, 9, 10]
    assert hourly.confusion.sum(axis=(1, 2)).tolist() == [1, 3, 1]
    assert hourly.feature_rows.tolist() == [1, 2, 1]  # the row without inputs counts nowhere
    # T0's hour: p0 (true 0, predicted 0), p1 (true 0, predicted 1), n (true 1, predicted 0)
    assert hourly.confusion[1].tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    [(_, rows, values)] = [v for v in hourly.values() if v[0] == hourly.hours[1]]
    assert rows == 3
    assert values["accuracy_score"] == pytest.approx(1 / 3)
    assert values["labels_matched"] == 3


def test_join_reads_the_same_rows_from_batches_and_from_row_objects() -> None:
    text = b"id,label\na,1\nb,2\na,3\nc,\nb,4\nd,5\na,6\n"

    fast = read_labels(io.BytesIO(text))
    slow = collect_labels(parse_label_stream(io.BytesIO(text)))

    for labels in (fast, slow):
        assert labels.ids == ["a", "b", "d"]
        assert [labels.label_texts[c] for c in labels.label_codes.tolist()] == ["6", "4", "5"]
        assert labels.rows.tolist() == [8, 6, 7]  # the later row wins
        assert (labels.read, labels.duplicate_rows, len(labels.rejected)) == (7, 3, 1)
        assert labels.duplicate_examples == [2, 3, 4]


class FakeDynamoDB:
    """Answers BatchGetItem from a dict, leaving some keys unprocessed on the first calls."""

    def __init__(self, items: dict[str, dict[str, Any]], unprocessed_calls: int) -> None:
        self.items = items
        self.unprocessed_calls = unprocessed_calls
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(len(keys))
        assert len(keys) <= 100
        if self.unprocessed_calls > 0:
            self.unprocessed_calls -= 1
            served, left = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        else:
            served, left = keys, []
        found = [self.items[k["inference_id"]["S"]] for k in served if k["inference_id"]["S"] in self.items]
        response: dict[str, Any] = {"Responses": {table: found}}
        if left:
            response["UnprocessedKeys"] = {table: {"Keys": left}}
        return response


def _typed(record: PredictionRecord) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in record.to_item().items()}


def test_join_dynamodb_store_asks_100_keys_a_call_and_retries_unprocessed_keys() -> None:
    card = small_card()
    items = {f"p{i}": _typed(make_record(card, f"p{i}", i % 3, T0)) for i in range(250)}
    fake = FakeDynamoDB(items, unprocessed_calls=2)
    store = DynamoDBPredictionStore(fake, "predictions", workers=1, base_delay=0.001)  # type: ignore[arg-type]

    asked = [f"p{i}" for i in range(260)]
    found = [asked[p] for columns in store.get_many(asked) for p in columns.positions.tolist()]

    assert sorted(found) == sorted(items)
    assert fake.calls[:2] == [100, 50]  # the first batch came back half unprocessed and was asked again
    assert sum(1 for c in fake.calls if c == 100) == 2


def test_join_dynamodb_store_gives_up_after_bounded_retries() -> None:
    fake = FakeDynamoDB({}, unprocessed_calls=1_000)
    store = DynamoDBPredictionStore(fake, "predictions", max_attempts=3, base_delay=0.001)  # type: ignore[arg-type]

    with pytest.raises(StoreUnavailableError, match="still unprocessed after 3 calls"):
        list(store.get_many(["a", "b", "c", "d"]))
    assert len(fake.calls) == 3


def test_join_typed_items_give_the_same_columns_as_records() -> None:
    card = small_card()
    records = [
        make_record(card, "b", 0, T0, "binned"),
        make_record(card, "r", 1, T0 + timedelta(milliseconds=1500), "raw"),
        make_record(card, "n", 2, T0 - timedelta(hours=3), "none"),
        make_record(card, "b2", 2, T0, "binned"),
    ]

    fast = columns_from_items([_typed(r) for r in records], [5, 6, 7, 8])
    slow = columns_from_records(records, [5, 6, 7, 8])

    assert len(fast) == len(slow) == 3  # binned, raw and none are laid out differently
    for a, b in zip(fast, slow, strict=True):
        assert (a.model_version, a.inputs_mode) == (b.model_version, b.inputs_mode)
        for name in ("positions", "label_index", "confidence", "probabilities", "predicted_at"):
            assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
        assert (a.inputs is None and b.inputs is None) or a.inputs.tolist() == b.inputs.tolist()  # type: ignore[union-attr]
    assert fast[0].predicted_at.tolist() == [T0.timestamp(), T0.timestamp()]


def test_join_dynamodb_store_reads_items_in_another_layout_through_the_record_reader() -> None:
    card = small_card()
    item = _typed(make_record(card, "p0", 1, T0))
    item["predicted_at"] = {"S": "2024-06-03T09:30:00+00:00"}  # an offset instead of Z
    store = DynamoDBPredictionStore(FakeDynamoDB({"p0": item}, 0), "predictions", workers=1)  # type: ignore[arg-type]

    [columns] = list(store.get_many(["p0"]))

    assert columns.predicted_at.tolist() == [T0.timestamp()]
    assert columns.label_index.tolist() == [1]


def test_join_a_damaged_file_counts_its_rows_once_and_the_damage_as_one_rejected_row() -> None:
    card = small_card()
    records = {f"p{i}": make_record(card, f"p{i}", i % 3, T0) for i in range(300)}
    body = gzip.compress(("id,label\n" + "".join(f"p{i},{i % 3}\n" for i in range(300))).encode())
    labels = read_labels(io.BytesIO(body[:-4]))  # the gzip trailer cut short

    result = join_labels(labels, InMemoryPredictionStore(records), lambda n, v: card)

    counts = result.accounting()
    assert _buckets(counts) == dict(read=301, matched=300, unknown=0, rejected=1, duplicate=0)
    assert counts["balanced"] is True
    assert counts["rejected_reasons"] == {"damaged file": 1}
    assert counts["file_error"] is not None and "line 301" in counts["file_error"]


def test_join_balance_fails_when_a_row_goes_missing_between_the_lines_and_the_buckets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = small_card()
    records = {f"p{i}": make_record(card, f"p{i}", i % 3, T0) for i in range(3)}
    monkeypatch.setattr(LabelBatch, "add", lambda self, parsed: None)  # a parser that loses rows

    result = join_labels(
        read_labels(io.BytesIO(b"id,label\np0,0\np1,\np2,2\n")),
        InMemoryPredictionStore(records),
        lambda n, v: card,
    )

    counts = result.accounting()
    assert (counts["read"], counts["matched"], counts["rejected"]) == (3, 2, 0)  # 'p1,' was lost
    assert counts["balanced"] is False


def test_join_only_valid_labels_compete_for_an_id() -> None:
    card = small_card()  # classes 0, 1, 2
    records = {f"p{i}": make_record(card, f"p{i}", 0, T0) for i in range(5)}
    text = "\n".join(
        [
            "id,label",
            "p0,1",
            "p0,cat",  # rejected; p0 keeps 1
            "p1,cat",  # rejected; p1 takes 2
            "p1,2",
            "p2,0",  # a duplicate: the later valid 1 wins
            "p2,1",
            "p2,7",  # out of range: rejected
            "p3,cat",
            "p3,dog",  # no valid label at all: both rejected, p3 unmatched
            "p4,1",
            "p4,",  # empty: rejected by the parser
            "ghost,cat",  # an unknown id: its labels cannot be judged, the last row counts
            "ghost,1",
        ]
    )

    result = join_labels(
        read_labels(io.BytesIO(text.encode())), InMemoryPredictionStore(records), lambda n, v: card
    )

    counts = result.accounting()
    assert _buckets(counts) == dict(read=13, matched=4, unknown=1, rejected=6, duplicate=2)
    assert counts["balanced"] is True
    # Every rejected row carries its id and its whole line, whether refused while reading or at
    # the join (those kept only their label: (3, "cat")).
    assert sorted((r.row, r.inference_id, r.raw) for r in result.rejected) == [
        (3, "p0", "p0,cat"),
        (4, "p1", "p1,cat"),
        (8, "p2", "p2,7"),
        (9, "p3", "p3,cat"),
        (10, "p3", "p3,dog"),
        (12, "p4", "p4,"),
    ]
    assert counts["duplicate_rows_overridden"] == [6, 13]
    matched = result.versions[("tiny", "0123456789ab")]
    assert sorted(matched.y_true.tolist()) == [1, 1, 1, 2]  # p0, p2 and p4 are 1, p1 is 2


def test_join_rejected_rows_wait_on_disk_not_in_memory() -> None:
    note = "x" * 200
    text = "request,label,comment\n" + "".join(f"r-{i},{i % 10},{note}\n" for i in range(100_000))
    body = io.BytesIO(text.encode())

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        labels = read_labels(body)  # no id column: every line is rejected
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert (labels.read, len(labels.rejected)) == (100_001, 100_001)
    assert held < 4_000_000  # about 26 MB of rejected rows (text and reason) are not held
    rows = list(labels.rejected)
    assert [r.row for r in rows[:3]] == [1, 2, 3] and rows[-1].raw == f"r-99999,9,{note}"


def test_join_an_unreadable_prediction_record_rejects_its_row_and_the_rest_are_joined() -> None:
    card = small_card()
    items = {f"p{i}": _typed(make_record(card, f"p{i}", i % 3, T0)) for i in range(6)}
    del items["p0"]["expires_at"]  # the table's TTL: not needed for metrics, so p0 still joins
    items["p0"]["predicted_at"] = {"S": "2024-06-03T09:30:00+00:00"}  # an offset: the record reader's path
    items["p1"]["predicted_at"] = {"S": "yesterday"}
    del items["p2"]["label_index"]
    del items["p3"]["label"]  # the predicted class name: not needed either
    store = DynamoDBPredictionStore(FakeDynamoDB(items, 0), "predictions", workers=1)  # type: ignore[arg-type]
    text = "id,label\n" + "".join(f"p{i},{i % 3}\n" for i in range(6)) + "p1,1\n"

    result = join_labels(read_labels(io.BytesIO(text.encode())), store, lambda n, v: card)

    counts = result.accounting()
    assert _buckets(counts) == dict(read=7, matched=4, unknown=0, rejected=2, duplicate=1)
    assert counts["balanced"] is True
    assert sorted((r.row, r.reason) for r in result.rejected) == [
        (4, "recorded prediction unreadable: label_index"),
        (8, "recorded prediction unreadable: predicted_at"),
    ]
    assert counts["duplicate_rows_overridden"] == [3]
    assert sorted(result.versions[("tiny", "0123456789ab")].y_pred.tolist()) == [0, 0, 1, 2]


@pytest.mark.parametrize("layout", ["csv", "json"])
def test_join_rejected_rows_carry_their_id_and_whole_line_however_they_were_refused(layout: str) -> None:
    card = small_card()
    records = {f"p{i}": make_record(card, f"p{i}", 0, T0) for i in range(3)}
    note = "é" * 3000
    if layout == "csv":
        lines = [b"id,label,note", b"p0,01,first", f"p1,cat,{note}".encode(), b"p2", b"p2,cat,\xff"]
        body = b"\n".join(lines) + b"\n"
        expected_raws = ["p0,01,first", f"p1,cat,{note}", "p2", "p2,cat,\ufffd"]
    else:
        docs = [
            {"id": "p0", "label": "01"},
            {"id": "p1", "label": "cat", "note": note},
            {"id": "p2", "label": []},
        ]
        lines = [json.dumps(d, ensure_ascii=False).encode() for d in docs]
        body = b"\n".join([*lines, b'{"id": "p2", "label": "cat", "note": "\xff"}'])
        expected_raws = [line.decode() for line in lines] + ['{"id": "p2", "label": "cat", "note": "\ufffd"}']

    result = join_labels(read_labels(io.BytesIO(body)), InMemoryPredictionStore(records), lambda n, v: card)

    rows = list(result.rejected)
    assert [r.inference_id for r in rows] == ["p0", "p1", "p2", "p2"]
    assert [r.raw for r in rows] == [raw if len(raw) <= 1000 else raw[:1000] + "..." for raw in expected_raws]
    assert rows[0].reason.startswith("unknown label '01'") and rows[3].reason.startswith(
        "unknown label 'cat'"
    )
