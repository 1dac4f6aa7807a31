from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from truthwatch.card import Baseline, FeatureBaseline, InputSpec, ModelCard
from truthwatch.records import (
    PredictionRecord,
    StoredPrediction,
    UnreadableRecordError,
    decode_binned,
    decode_raw,
    encode_inputs,
    expiry,
    format_time,
    parse_capture_mode,
    parse_time,
)


def _tiny_card(**changes: object) -> ModelCard:
    features = tuple(
        FeatureBaseline(name=n, bin_edges=(4.0, 8.0, 12.0), proportions=(0.25,) * 4) for n in ("a", "b")
    )
    return ModelCard.model_construct(
        input=InputSpec(shape=(2,), feature_names=("a", "b"), value_range=(0.0, 16.0)),
        baseline=Baseline(features=features, class_priors=(0.5, 0.5)),
        **changes,
    )


def test_binned_capture_stores_one_bin_per_feature():
    rows = np.array([[0.0, 16.0], [8.0, 5.0]], dtype=np.float32)

    encoded = encode_inputs(rows, "binned", _tiny_card())

    assert encoded == [bytes([0, 3]), bytes([2, 1])]
    assert decode_binned(encoded[1], 2).tolist() == [2, 1]


def test_raw_capture_round_trips_and_none_stores_nothing():
    rows = np.array([[0.5, 16.0]], dtype=np.float32)

    assert decode_raw(encode_inputs(rows, "raw", _tiny_card())[0], 2).tolist() == [0.5, 16.0]
    assert encode_inputs(rows, "none", _tiny_card()) == [None]


def test_decoding_the_wrong_width_is_an_error():
    with pytest.raises(ValueError, match="hold 3 features, expected 2"):
        decode_binned(b"\x00\x01\x02", 2)


def test_record_round_trips_through_an_item():
    moment = datetime(2026, 12, 3, 10, 30, 5, 123456, tzinfo=UTC)
    record = PredictionRecord(
        inference_id="01938f5e-0000-7000-8000-000000000001",
        model_name="digits",
        model_version="0123456789ab",
        predicted_at=moment,
        label="7",
        label_index=7,
        confidence=0.91234567,
        probabilities=(0.08765433, 0.91234567),
        inputs_mode="binned",
        inputs=b"\x00\x03",
        expires_at=expiry(moment, 30),
    )

    item = record.to_item()
    back = PredictionRecord.from_item(item)

    assert item["predicted_at"] == "2026-12-03T10:30:05.123Z"
    assert item["confidence"] == Decimal("0.912346")
    assert item["expires_at"] == int(datetime(2027, 1, 2, 10, 30, 5, tzinfo=UTC).timestamp())
    assert back.predicted_at == datetime(2026, 12, 3, 10, 30, 5, 123000, tzinfo=UTC)
    assert back.inputs == b"\x00\x03"
    assert back.probabilities == (0.087654, 0.912346)


def test_non_finite_numbers_are_never_stored():
    record = PredictionRecord(
        "id", "m", "v", datetime.now(UTC), "1", 1, float("nan"), (1.0,), "none", None, 0
    )

    with pytest.raises(ValueError, match="non-finite"):
        record.to_item()


def test_capture_mode_is_validated():
    assert parse_capture_mode(" Binned ") == "binned"
    with pytest.raises(ValueError, match="none, binned, raw"):
        parse_capture_mode("all")


def test_times_are_utc_with_milliseconds():
    moment = parse_time("2026-12-03T11:00:00.5+01:00")

    assert format_time(moment) == "2026-12-03T10:00:00.500Z"
    with pytest.raises(ValueError, match="no offset"):
        parse_time("2026-12-03T11:00:00")


def test_stored_prediction_needs_no_label_nor_expiry_and_names_the_field_it_cannot_read():
    item = PredictionRecord(
        "id", "m", "v", datetime(2026, 12, 3, tzinfo=UTC), "1", 1, 0.9, (0.1, 0.9), "none", None, 0
    ).to_item()
    del item["label"], item["expires_at"]

    assert StoredPrediction.from_item(item).label_index == 1
    with pytest.raises(UnreadableRecordError, match="label: missing"):  # the full record still needs them
        PredictionRecord.from_item(item)
    for field, value in [("predicted_at", "yesterday"), ("probabilities", 3), ("inputs_mode", "all")]:
        with pytest.raises(UnreadableRecordError) as raised:
            StoredPrediction.from_item({**item, field: value})
        assert raised.value.field == field
