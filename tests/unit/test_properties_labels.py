"""Property tests of label parsing and the join: any bytes are read, every row lands in one bucket.

``read = matched + unknown + rejected + duplicate`` must hold for whatever the object holds, and
for well-formed files the buckets must be exactly what an independent count of the rows gives.
"""

from __future__ import annotations

import gzip
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_join import T0, make_record, small_card
from truthwatch.join import InMemoryPredictionStore, JoinResult, read_labels
from truthwatch.join import join_labels as join

CARD = small_card()
RECORDED = {f"p{i}": make_record(CARD, f"p{i}", i % 3, T0) for i in range(10)}
VALID_LABELS = ("0", "1", "2", " 1 ", "2.0", "1.0")
INVALID_LABELS = ("cat", "3", "-1", "1.5", "nan")
IDS = tuple(RECORDED) + tuple(f"ghost-{i}" for i in range(5))


def _join(data: bytes) -> JoinResult:
    store = InMemoryPredictionStore(RECORDED, batch_size=4)
    return join(read_labels(io.BytesIO(data)), store, lambda name, version: CARD)


def _assert_balanced(result: JoinResult) -> None:
    counts = result.accounting()
    assert counts["read"] == counts["matched"] + counts["unknown"] + counts["rejected"] + counts["duplicate"]
    assert counts["balanced"] is True
    assert min(counts[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")) >= 0


def _wrap(data: bytes, bom: bool, compress: bool) -> bytes:
    if bom:
        data = b"\xef\xbb\xbf" + data
    return gzip.compress(data) if compress else data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000), bom=st.booleans(), compress=st.booleans())
def test_any_bytes_are_read_without_error_and_every_row_is_counted(
    data: bytes, bom: bool, compress: bool
) -> None:
    _assert_balanced(_join(_wrap(data, bom, compress)))


LINES = st.one_of(
    st.sampled_from(IDS).flatmap(
        lambda i: st.sampled_from(VALID_LABELS + INVALID_LABELS).map(lambda x: f"{i},{x}")
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
    st.sampled_from(
        ['"p1","2"', '"p2\nstill p2",1', "p3,1,extra,columns", '{"inference_id": "p4", "label": 2}']
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.sampled_from(["inference_id,label", "Inference-ID,Ground Truth", "id,y_true", "label,id", ""]),
    lines=st.lists(LINES, max_size=40),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    compress=st.booleans(),
    cut=st.integers(0, 50),
)
def test_messy_csv_always_balances(
    header: str, lines: list[str], newline: str, bom: bool, compress: bool, cut: int
) -> None:
    data = _wrap(newline.join([header, *lines]).encode("utf-8"), bom, compress)
    if compress and cut:
        data = data[:-cut]  # a gzip stream that breaks off keeps the rows read before the break

    _assert_balanced(_join(data))


ROWS = st.lists(
    st.tuples(st.sampled_from(IDS), st.sampled_from((*VALID_LABELS, *INVALID_LABELS, ""))), max_size=60
)


def _expected(rows: list[tuple[str, str]]) -> dict[str, int]:
    """The buckets counted independently of the parser: empty labels first, then the last row wins."""
    parsed = [(i, label) for i, label in rows if label.strip()]
    last = dict(parsed)
    matched = sum(1 for i, label in last.items() if i in RECORDED and label in VALID_LABELS)
    unknown = sum(1 for i in last if i not in RECORDED)
    invalid = sum(1 for i, label in last.items() if i in RECORDED and label not in VALID_LABELS)
    return {
        "read": len(rows),
        "matched": matched,
        "unknown": unknown,
        "rejected": (len(rows) - len(parsed)) + invalid,
        "duplicate": len(parsed) - len(last),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, as_json=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]), compress=st.booleans())
def test_well_formed_files_fill_exactly_the_expected_buckets(
    rows: list[tuple[str, str]], as_json: bool, newline: str, compress: bool
) -> None:
    if as_json:
        text = newline.join(json.dumps({"inference_id": i, "label": label}) for i, label in rows)
    else:
        text = newline.join(["inference_id,label", *(f"{i},{label}" for i, label in rows)])

    counts = _join(_wrap(text.encode("utf-8"), bom=False, compress=compress)).accounting()

    assert {k: counts[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")} == _expected(rows)
