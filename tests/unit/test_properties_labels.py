"""Property tests of label parsing and the join: any bytes are read, every row lands in one bucket.

``read = matched + unknown + rejected + duplicate`` must hold for whatever the object holds, and
``read`` must be the number of data lines counted from the bytes without the parser (every
non-blank line after the header is one row; a damaged gzip stream adds one row for its unreadable
rest). For well-formed files the buckets must be exactly what an independent count of the rows
gives.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.unit.test_join import T0, make_record, small_card
from truthwatch.join import InMemoryPredictionStore, JoinResult, read_labels
from truthwatch.join import join_labels as join

CARD = small_card()
RECORDED = {f"p{i}": make_record(CARD, f"p{i}", i % 3, T0) for i in range(10)}
VALID_LABELS = ("0", "1", "2", " 1 ", "2.0", "1.0", "1.00")
INVALID_LABELS = ("cat", "3", "-1", "1.5", "nan", "01", "1e0", "+1", "\uff11")
IDS = tuple(RECORDED) + tuple(f"ghost-{i}" for i in range(5))


def _join(data: bytes) -> JoinResult:
    store = InMemoryPredictionStore(RECORDED, batch_size=4)
    return join(read_labels(io.BytesIO(data)), store, lambda name, version: CARD)


def _assert_balanced(result: JoinResult) -> None:
    counts = result.accounting()
    assert counts["read"] == counts["matched"] + counts["unknown"] + counts["rejected"] + counts["duplicate"]
    assert counts["balanced"] is True
    assert min(counts[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")) >= 0


def _physical_lines(text: str) -> list[str]:
    """The lines of ``text`` split at CR, LF and CRLF, without their ends."""
    pieces = re.split(r"\r\n|\r|\n", text)
    return pieces[:-1] if pieces[-1] == "" else pieces


def _names_id_and_label(header: str) -> bool:
    """The documented header rule: one line, naming an id and a label column (case, _ - and spaces aside)."""
    fields = next(csv.reader([header + "\n"]), [])
    if fields and fields[-1].endswith("\n"):
        return False  # a quote left open
    names = {re.sub(r"[_ -]", "", f.strip().lower()) for f in fields}
    return bool(names & {"inferenceid", "id"}) and bool(names & {"label", "groundtruth", "ytrue"})


def _data_lines(data: bytes) -> int:
    """Data rows of a label object, counted from its bytes alone: the expected ``read``."""
    damaged = False
    if data[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(data)
        damaged = not inflater.eof or inflater.unused_data.strip(b"\x00") != b""
    text = data.decode(_codec(data), errors="replace").removeprefix("\ufeff")
    lines = _physical_lines(text)
    if damaged and lines and not text.endswith(("\r", "\n")):
        lines.pop()  # cut by the damage: part of the damaged rest, not a row
    data_lines = [line for line in lines if line.strip()]
    header = 0
    if data_lines and not data_lines[0].lstrip().startswith("{") and _names_id_and_label(data_lines[0]):
        header = 1
    return len(data_lines) - header + damaged


def _codec(data: bytes) -> str:
    """The documented choice: UTF-32 or UTF-16 by byte-order mark, else by NUL bytes in the first 512.

    Over 90% NUL in the places a wide encoding leaves empty for ASCII text, under 10% in the others.
    """
    marks = {b"\xff\xfe\x00\x00": "utf-32-le", b"\x00\x00\xfe\xff": "utf-32-be"}
    marks |= {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
    for mark, codec in marks.items():
        if data.startswith(mark):
            return codec
    head = data[:512]
    if len(head) < 8:
        return "utf-8"

    def nul_share(places: set[int], step: int) -> float:
        picked = [byte for i, byte in enumerate(head) if i % step in places]
        return sum(byte == 0 for byte in picked) / len(picked)

    layouts = [
        ({1, 2, 3}, {0}, 4, "utf-32-le"),
        ({0, 1, 2}, {3}, 4, "utf-32-be"),
        ({1}, {0}, 2, "utf-16-le"),
        ({0}, {1}, 2, "utf-16-be"),
    ]
    for high, low, step, codec in layouts:
        empty = min(nul_share({place}, step) for place in high)
        if empty > 0.9 and nul_share(low, step) < 0.1:
            return codec
    return "utf-8"


def _wrap(data: bytes, bom: bool, compress: bool) -> bytes:
    if bom:
        data = b"\xef\xbb\xbf" + data
    return gzip.compress(data) if compress else data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000), bom=st.booleans(), compress=st.booleans())
def test_any_bytes_are_read_without_error_and_every_row_is_counted(
    data: bytes, bom: bool, compress: bool
) -> None:
    assume(compress or data[:2] != b"\x1f\x8b")  # random bytes after the gzip magic: no independent count
    wrapped = _wrap(data, bom, compress)

    result = _join(wrapped)

    _assert_balanced(result)
    assert result.read == _data_lines(wrapped)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mark=st.sampled_from([b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b""]),
    data=st.binary(max_size=600),
    wide=st.sampled_from(["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]),
    text=st.text(max_size=200),
    compress=st.booleans(),
)
def test_files_in_a_wide_encoding_are_read_without_error_and_every_row_is_counted(
    mark: bytes, data: bytes, wide: str, text: str, compress: bool
) -> None:
    # Random bytes after a byte-order mark (odd lengths, unpaired surrogates), or text encoded
    # wide with no mark (NUL bytes between the characters), then maybe damaged bytes.
    body = mark + data if mark else text.encode(wide, errors="surrogatepass") + data[:3]
    wrapped = _wrap(body, bom=False, compress=compress)

    result = _join(wrapped)

    _assert_balanced(result)
    assert result.read == _data_lines(wrapped)


LINES = st.one_of(
    st.sampled_from(IDS).flatmap(
        lambda i: st.sampled_from(VALID_LABELS + INVALID_LABELS).map(lambda x: f"{i},{x}")
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
    st.sampled_from(
        [
            '"p1","2"',
            '"p2\nstill p2",1',
            "p3,1,extra,columns",
            '{"inference_id": "p4", "label": 2}',
            'p5,"1',
            '"p6,2',
            'p7,"3"x"',
        ]
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

    result = _join(data)

    _assert_balanced(result)
    assert result.read == _data_lines(data)


ROWS = st.lists(
    st.tuples(st.sampled_from(IDS), st.sampled_from((*VALID_LABELS, *INVALID_LABELS, ""))), max_size=60
)


def _expected(rows: list[tuple[str, str]]) -> dict[str, int]:
    """The buckets counted independently of the parser and the join.

    An empty label is rejected; among the rows of a recorded id only valid labels compete, the
    last one wins and the earlier valid ones are duplicates, an invalid one is rejected; the rows of
    an id never recorded cannot be judged, so the last is unknown and the earlier ones duplicates.
    """
    parsed = [(i, label) for i, label in rows if label.strip()]
    counts = {
        "read": len(rows),
        "matched": 0,
        "unknown": 0,
        "rejected": len(rows) - len(parsed),
        "duplicate": 0,
    }
    for inference_id in dict.fromkeys(i for i, _ in parsed):
        labels = [label for i, label in parsed if i == inference_id]
        if inference_id not in RECORDED:
            counts["unknown"] += 1
            counts["duplicate"] += len(labels) - 1
            continue
        valid = [label for label in labels if label in VALID_LABELS]
        counts["rejected"] += len(labels) - len(valid)
        counts["matched"] += bool(valid)
        counts["duplicate"] += max(len(valid) - 1, 0)
    return counts


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
