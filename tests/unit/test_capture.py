from datetime import UTC, datetime

import numpy as np
import pytest

from truthwatch.capture import (
    DynamoDBRecorder,
    failure_entry,
    read_failure_lines,
    record_from_entry,
)
from truthwatch.records import PredictionRecord

RECORD = PredictionRecord(
    inference_id="01938f5e-0000-7000-8000-000000000001",
    model_name="digits",
    model_version="0123456789ab",
    predicted_at=datetime(2026, 12, 3, 10, 30, 5, 123000, tzinfo=UTC),
    label="7",
    label_index=7,
    confidence=0.9,
    probabilities=(0.0,) * 7 + (0.9, 0.05, 0.05),
    inputs_mode="binned",
    inputs=bytes(range(64)),
    expires_at=1_800_000_000,
)


def test_failure_entry_round_trips():
    assert record_from_entry(failure_entry(RECORD)) == RECORD


def test_failure_lines_are_found_in_an_export_and_other_lines_skipped():
    import json

    line = json.dumps({"level": "ERROR", "message": "capture_failed", "record": failure_entry(RECORD)})
    broken = json.dumps({"message": "capture_failed", "record": {"inference_id": "x"}})
    lines = [f"2026-12-03T10:30:05.123Z {line}", "START RequestId: 1", '{"message": "predicted"}', broken]

    found = read_failure_lines(lines)

    assert (found.records, found.skipped, found.invalid) == ([RECORD], 2, 1)


class _Client:
    def __init__(self, fail_times: int) -> None:
        self.calls: list[int] = []
        self.fail_times = fail_times

    def batch_write_item(self, RequestItems):  # noqa: N803
        requests = RequestItems["t"]
        self.calls.append(len(requests))
        if len(self.calls) <= self.fail_times:
            return {"UnprocessedItems": {"t": requests}}
        return {"UnprocessedItems": {}}


@pytest.mark.parametrize(
    ("fail_times", "lost", "calls"),
    [(0, 0, [25, 5]), (3, 0, [25, 25, 25, 25, 5]), (4, 25, [25, 25, 25, 25, 5])],
)
def test_recorder_chunks_by_25_and_retries_a_bounded_number_of_times(fail_times, lost, calls):
    client = _Client(fail_times)
    waits: list[float] = []
    records = [PredictionRecord(**{**RECORD.__dict__, "inference_id": f"id-{i}"}) for i in range(30)]

    failed = DynamoDBRecorder(client, "t", attempts=4, sleep=waits.append).record(records)  # type: ignore[arg-type]

    assert len(failed) == lost
    assert client.calls == calls
    assert len(waits) == min(fail_times, 3)
    assert all(0 <= w < 0.5 for w in waits)


def test_vectorised_binning_matches_the_record_schema(exported_model):
    from truthwatch.capture import binned_inputs
    from truthwatch.records import encode_inputs

    rng = np.random.default_rng(0)
    rows = rng.uniform(-2, 18, size=(50, 64)).astype(np.float32)
    rows[0, :8] = np.asarray(exported_model.card.baseline.features[0].bin_edges[:1] * 8)

    assert binned_inputs(rows, exported_model.card) == encode_inputs(rows, "binned", exported_model.card)
