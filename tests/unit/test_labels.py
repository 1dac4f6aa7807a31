"""Label file parsing: the three layouts, gzip, header spellings, and a reason for every refusal."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
from urllib3.exceptions import ProtocolError

from truthwatch.labels import (
    RAW_TEXT_LIMIT,
    LabelResolver,
    LabelRow,
    LabelStreamError,
    LineSpool,
    RejectedRow,
    RejectedRows,
    RowTexts,
    parse_label_batches,
    parse_label_stream,
    rejected_jsonl,
)

DIGITS = tuple(str(i) for i in range(10))


def _parse(data: bytes) -> list[LabelRow | RejectedRow]:
    return list(parse_label_stream(io.BytesIO(data)))


@pytest.mark.parametrize(
    "header", ["inference_id,label", " InferenceId , Y_TRUE ", "ID,Ground_Truth", "id,ground-truth"]
)
def test_labels_csv_header_spellings_are_matched(header: str) -> None:
    rows = _parse(f"{header}\nabc,7\n".encode())

    assert rows == [LabelRow(row=2, inference_id="abc", label="7")]


def test_labels_csv_tolerates_bom_crlf_quotes_blank_lines_and_extra_columns_one_line_a_row() -> None:
    data = (
        '\ufeffnote,label,inference_id\r\n\r\n"a, b","  3 ",id-1\r\n'
        'x,"4",\r\n  \r\n"multi\r\nline",5,id-2\r\n'
    )

    rows = _parse(data.encode("utf-8"))

    # One line is one row: the quote left open on line 6 rejects that line, line 7 is read alone.
    # A rejected row's raw text is its line as read (it was the fields written back, 'x,4,').
    assert rows == [
        LabelRow(3, "id-1", "3"),
        RejectedRow(4, "missing inference id", 'x,"4",'),
        RejectedRow(6, "unterminated quote", '"multi'),
        LabelRow(7, "id-2", "5"),
    ]


def test_labels_csv_line_with_an_unterminated_quote_is_rejected_and_the_next_lines_are_read() -> None:
    rows = _parse(b'id,label\na0,"1\na3,3\na4,4\na5,5\n')

    assert rows == [
        RejectedRow(2, "unterminated quote", 'a0,"1'),
        LabelRow(3, "a3", "3"),
        LabelRow(4, "a4", "4"),
        LabelRow(5, "a5", "5"),
    ]


def test_labels_csv_unterminated_quote_in_a_large_file_costs_its_own_line_only() -> None:
    lines = [f"a{i},{i % 10}" for i in range(20_001)]
    lines[0] = 'a0,"1'

    rows = _parse(("id,label\n" + "\n".join(lines) + "\n").encode())

    assert len(rows) == 20_001
    assert [r for r in rows if isinstance(r, RejectedRow)] == [RejectedRow(2, "unterminated quote", 'a0,"1')]
    assert rows[-1] == LabelRow(20_002, "a20000", "0")


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 4, 100])
def test_labels_csv_every_line_is_one_row_across_batch_ends(batch_rows: int) -> None:
    data = b'id,label\r\n"q1",1\r\nb,"2\r\nc,3\r\nd,"4"\r\n\r\ne,"5,5\r\nf,"6'

    rows = [r for batch in parse_label_batches(io.BytesIO(data), batch_rows) for r in batch.parsed()]

    assert rows == [
        LabelRow(2, "q1", "1"),
        RejectedRow(3, "unterminated quote", 'b,"2'),
        LabelRow(4, "c", "3"),
        LabelRow(5, "d", "4"),
        RejectedRow(7, "unterminated quote", 'e,"5,5'),
        RejectedRow(8, "unterminated quote", 'f,"6'),
    ]


def test_labels_csv_header_with_an_unterminated_quote_rejects_every_line() -> None:
    rows = _parse(b'id,"label\na,1\nb,2\n')

    assert [r.row for r in rows] == [1, 2, 3]
    assert all(isinstance(r, RejectedRow) and "unterminated quote" in r.reason for r in rows)


def test_labels_csv_without_an_id_column_rejects_every_row_with_the_reason() -> None:
    rows = _parse(b"a,b\n1,2\n3,4\n")

    assert [r.row for r in rows] == [1, 2, 3]
    assert all(isinstance(r, RejectedRow) and "names no inference id column" in r.reason for r in rows)


def test_labels_json_lines_take_the_same_fields_and_ignore_extras() -> None:
    lines = [
        {"inferenceId": "a", "label": 3, "score": [1, 2]},
        {"ID": "b", "ground_truth": 4.0},
        {"id": "c", "y_true": " 5 "},
        {"id": "d"},
        {"id": "e", "label": True},
        {"id": "f", "label": {"nested": 1}},
    ]
    data = "\n".join(json.dumps(line) for line in lines) + "\n\n[1, 2]\nnot json\n"

    rows = _parse(data.encode())

    assert rows[:3] == [LabelRow(1, "a", "3"), LabelRow(2, "b", "4.0"), LabelRow(3, "c", "5")]
    assert [r.reason for r in rows[3:] if isinstance(r, RejectedRow)][:3] == [
        "missing label",
        "label is a boolean",
        "label is a JSON object, expected a string or number",
    ]
    assert isinstance(rows[6], RejectedRow) and rows[6].row == 8 and "expected an object" in rows[6].reason
    assert isinstance(rows[7], RejectedRow) and rows[7].reason.startswith("not valid JSON")


def test_labels_sagemaker_ground_truth_prefers_inference_id_then_event_id() -> None:
    lines = [
        {
            "groundTruthData": {"data": "1", "encoding": "CSV"},
            "eventMetadata": {"eventId": "e-1", "inferenceId": "i-1"},
        },
        {"groundTruthData": {"data": "2", "encoding": "CSV"}, "eventMetadata": {"eventId": "e-2"}},
        {"groundTruthData": {"data": "3"}, "eventMetadata": {}},
    ]
    rows = _parse("\n".join(json.dumps(line) for line in lines).encode())

    assert rows[:2] == [LabelRow(1, "i-1", "1"), LabelRow(2, "e-2", "2")]
    assert isinstance(rows[2], RejectedRow) and rows[2].reason == "missing inference id"


def test_labels_gzip_is_detected_by_content_not_name() -> None:
    rows = _parse(gzip.compress(b"id,label\na,1\n"))

    assert rows == [LabelRow(2, "a", "1")]


def _digits_csv(rows: int) -> bytes:
    return ("id,label\n" + "".join(f"id-{i},{i % 10}\n" for i in range(rows))).encode()


def _counts(rows: list[LabelRow | RejectedRow]) -> tuple[int, int, list[str]]:
    good = [r for r in rows if isinstance(r, LabelRow)]
    rejected = [r for r in rows if isinstance(r, RejectedRow)]
    return len(good), len({r.row for r in good}), [r.reason.split(":")[0] for r in rejected]


@pytest.mark.parametrize(
    ("damage", "lost"),
    [
        (lambda body: body[:-4], "truncated"),  # the gzip trailer cut short
        (lambda body: body + b"garbage", "trailing"),  # bytes after the end of the gzip stream
        (lambda body: body[:-8] + b"\x00\x00\x00\x00" + body[-4:], "crc"),  # a wrong checksum
    ],
)
def test_labels_damaged_gzip_keeps_each_row_once_and_rejects_the_damage_once(damage: Any, lost: str) -> None:
    rows = _parse(damage(gzip.compress(_digits_csv(300))))

    assert _counts(rows) == (300, 300, ["damaged file"])
    assert rows[-1].row == 302
    assert isinstance(rows[-1], RejectedRow) and "line 301" in rows[-1].reason


def test_labels_gzip_cut_mid_line_rejects_the_cut_line_with_the_damage() -> None:
    body = gzip.compress(_digits_csv(50_000))
    cut = body[: len(body) // 2]
    text = zlib.decompressobj(wbits=31).decompress(cut).decode()
    complete = text.count("\n")  # the header and the data lines that were read whole

    rows = _parse(cut)

    assert _counts(rows) == (complete - 1, complete - 1, ["damaged file"])
    assert rows[-1].row == complete + 1
    assert isinstance(rows[-1], RejectedRow) and rows[-1].raw == text.rsplit("\n", 1)[1]


def test_labels_damage_before_any_row_is_one_rejected_row() -> None:
    assert _counts(_parse(gzip.compress(_digits_csv(10))[:12])) == (0, 0, ["damaged file"])


class BreaksAfter:
    """A body that hands out ``size`` bytes of ``data`` and then fails as a dropped connection would."""

    def __init__(self, data: bytes, size: int, error: Exception) -> None:
        self._data = io.BytesIO(data[:size])
        self._error = error

    def read(self, amt: int | None = None, /) -> bytes:
        chunk = self._data.read(amt)
        if not chunk:
            raise self._error
        return chunk


READ_FAILURES = [
    ReadTimeoutError(endpoint_url="https://s3.eu-west-1.amazonaws.com/bucket/labels/x.csv"),
    IncompleteReadError(actual_bytes=100, expected_bytes=5000),
    ResponseStreamingError(error=ProtocolError("Connection broken: IncompleteRead")),
    ConnectionResetError(104, "Connection reset by peer"),
]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("error", READ_FAILURES, ids=lambda e: type(e).__name__)
def test_labels_a_read_failure_part_way_is_raised_for_a_retry(error: Exception, compressed: bool) -> None:
    data = _digits_csv(5000)
    body = gzip.compress(data) if compressed else data

    with pytest.raises(LabelStreamError, match=type(error).__name__):
        list(parse_label_batches(BreaksAfter(body, len(body) // 2, error)))


def test_labels_rows_with_invalid_utf8_are_rejected() -> None:
    rows = _parse(b"id,label\nab\xff,1\nok,2\n")

    assert isinstance(rows[0], RejectedRow) and rows[0].reason == "not valid UTF-8"
    assert rows[1] == LabelRow(3, "ok", "2")


def test_labels_empty_and_blank_files_have_no_rows() -> None:
    assert _parse(b"") == []
    assert _parse(b"\n\r\n  \n") == []
    assert _parse(b"id,label\r\n") == []


@pytest.mark.parametrize("label", ["1", " 1 ", "\t1\r", "1.0", "1.00"])
def test_labels_spellings_of_one_name_the_same_class(label: str) -> None:
    assert LabelResolver(DIGITS).index(label) == 1


@pytest.mark.parametrize(
    "label",
    # "1e0" and "01" named class 1 through float() before; the rule is an integer without sign or
    # leading zeros, optionally ".0..."; so does every other spelling float() took.
    [
        *("cat", "10", "-1", "1.5", "nan", "inf", "", "1e0", "01", "+1", "-0", "0_1", "\uff11", "\u0663"),
        *("1.", ".0", "1.01", "0x1", "1 0", "\u00a01", "1" * 5000),
    ],
)
def test_labels_anything_else_is_unknown(label: str) -> None:
    resolver = LabelResolver(DIGITS)

    assert resolver.index(label) is None
    assert resolver.reason(label).startswith("unknown label")


def test_labels_are_trimmed_of_ascii_whitespace_only() -> None:
    rows = _parse("id,label\na, 1\t\nb,\u00a02\u00a0\n".encode())

    assert rows == [LabelRow(2, "a", "1"), LabelRow(3, "b", "\u00a02\u00a0")]


def test_labels_class_names_win_over_indices() -> None:
    resolver = LabelResolver(("cat", "dog", "1"))

    assert [resolver.index(x) for x in ("dog", "1", "1.0", "0", "2", "3")] == [1, 2, 2, 0, 2, None]


def test_labels_rejected_rows_are_written_in_row_order() -> None:
    data = rejected_jsonl([RejectedRow(9, "missing label", "x,"), RejectedRow(2, "bad", "é")])

    assert [json.loads(line) for line in data.decode().splitlines()] == [
        {"row": 2, "reason": "bad", "inference_id": None, "raw": "é"},
        {"row": 9, "reason": "missing label", "inference_id": None, "raw": "x,"},
    ]


def test_labels_json_lines_in_small_batches_keep_every_row_in_order() -> None:
    lines = [
        '{"inference_id": "a", "label": 3}',
        '{"inference_id": 17, "label": " 4 "}',
        '{"inference_id": "b", "label": true}',
        "",
        '{"inference_id": "c\\ufffd", "label": "1"}',
        '{"groundTruthData": {"data": "2"}, "eventMetadata": {"eventId": "d"}}',
        '{"inference_id": "e", "label": 5.0}',
    ]
    # Row 5 holds a real U+FFFD, valid UTF-8 (it was rejected as not UTF-8 until bytes that fail
    # to decode were told apart from it); row 8 holds a byte that is not UTF-8.
    data = "\n".join(lines).encode() + b'\n{"inference_id": "f\xff", "label": "1"}'

    batches = list(parse_label_batches(io.BytesIO(data), batch_rows=2))
    rows = _parse(data)

    assert [r.row for b in batches for r in b.parsed()] == [r.row for r in rows] == [1, 2, 3, 5, 6, 7, 8]
    assert [r for r in rows if isinstance(r, LabelRow)] == [
        LabelRow(1, "a", "3"),
        LabelRow(2, "17", "4"),
        LabelRow(5, "c\ufffd", "1"),
        LabelRow(6, "d", "2"),
        LabelRow(7, "e", "5.0"),
    ]
    assert [(r.row, r.reason) for r in rows if isinstance(r, RejectedRow)] == [
        (3, "label is a boolean"),
        (8, "not valid UTF-8"),
    ]


def test_labels_truncated_gzip_json_lines_keep_each_row_once() -> None:
    lines = "".join(json.dumps({"inference_id": f"id-{i}", "label": i % 10}) + "\n" for i in range(300))

    rows = _parse(gzip.compress(lines.encode())[:-4])

    assert _counts(rows) == (300, 300, ["damaged file"])
    assert rows[-1].row == 301


@pytest.mark.parametrize("data", [b"\xef", b"\xef\xbb", b"\xef\xbb\xbf\xef"])
def test_labels_a_file_of_a_broken_byte_order_mark_is_one_rejected_row(data: bytes) -> None:
    rows = _parse(data)

    assert [(r.row, type(r)) for r in rows] == [(1, RejectedRow)]


def test_labels_rejected_rows_from_reading_and_from_the_join_come_back_in_row_order() -> None:
    read = [
        RejectedRow(2, "missing label", "a,", "a"),
        RejectedRow(7, 'bad "x"', "é\n"),
        RejectedRow(9, "m", ""),
    ]
    lines = RowTexts({8: "p,cat", 1: "q,7", 5: "p,dog"})
    with RejectedRows(ids=["p", "q"], lines=lines) as rows:
        rows.extend(read[:2])
        rows.extend(read[2:])
        rows.reject(np.array([8, 1]), np.array([0, 1]), "unknown label")
        rows.reject(np.array([5]), np.array([0]), np.array([rows.reason_id("no card")]))
        joined = [RejectedRow(8, "unknown label", "p,cat", "p"), RejectedRow(1, "unknown label", "q,7", "q")]
        expected = rejected_jsonl([*read, *joined, RejectedRow(5, "no card", "p,dog", "p")])

        assert rows.jsonl().read() == expected
        assert list(rows) == [json_row(line) for line in expected.decode().splitlines()]
        assert (len(rows), rows.kinds()) == (
            6,
            {"unknown label": 2, "missing label": 1, "bad": 1, "m": 1, "no card": 1},
        )


def json_row(line: str) -> RejectedRow:
    entry = json.loads(line)
    return RejectedRow(entry["row"], entry["reason"], entry["raw"], entry["inference_id"])


@pytest.mark.parametrize(
    "deep_line",
    [
        '{"inference_id": "m-0", "label": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"groundTruthData": {"data": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + '}, "eventMetadata": {}}',
    ],
)
def test_labels_a_json_line_nested_too_deeply_is_rejected_and_the_rest_is_read(deep_line: str) -> None:
    rows = _parse(f'{deep_line}\n{{"inference_id": "m-1", "label": "0"}}\n'.encode())

    assert [type(r) for r in rows] == [RejectedRow, LabelRow]
    assert rows[0].reason == "not valid JSON (nested too deeply)"  # type: ignore[union-attr]
    assert rows[1] == LabelRow(2, "m-1", "0")


@pytest.mark.parametrize(
    ("literal", "index"),
    [
        ("1", 1),
        ("1.0", 1),
        ("1.00", 1),
        ("0", 0),
        ("9", 9),
        ("1e0", None),
        ("1E0", None),
        ("100e-2", None),
        ("0.99999999999999999", None),
        ("1.00000000000000001", None),
        ("9.0e0", None),
        ("-0", None),
        ("-0.0", None),
        ("1" * 5000, None),
    ],
)
def test_labels_a_json_number_is_judged_by_its_literal_as_a_csv_cell_is(
    literal: str, index: int | None
) -> None:
    resolver = LabelResolver(DIGITS)
    json_lines = f'{{"inference_id": "a", "label": {literal}}}\n'
    sagemaker = f'{{"groundTruthData": {{"data": {literal}}}, "eventMetadata": {{"eventId": "a"}}}}\n'

    parsed = [_parse(data.encode()) for data in (json_lines, sagemaker, f"id,label\na,{literal}\n")]

    assert [rows[0] for rows in parsed] == [LabelRow(1, "a", literal)] * 2 + [LabelRow(2, "a", literal)]
    assert resolver.index(literal) == index


def test_labels_a_json_number_too_long_for_an_integer_gets_a_plain_reason() -> None:
    digits = "1" * 5000

    rows = _parse(f'{{"inference_id": {digits}, "label": 1}}\n'.encode())

    assert rows == [RejectedRow(1, "inference id longer than 2048 bytes", rows[0].raw)]  # type: ignore[union-attr]
    assert LabelResolver(DIGITS).reason(digits).startswith("unknown label '1111")


def test_labels_a_row_whose_id_is_too_long_keeps_its_line_cut_as_every_raw_text_is() -> None:
    line = "i" * 2049 + ",1"

    rows = _parse(f"inference_id,label\n{line}\n".encode())

    assert rows == [RejectedRow(2, "inference id longer than 2048 bytes", line[:RAW_TEXT_LIMIT] + "...")]
    short = _parse(b"inference_id,label\n" + "\u00e9".encode() * 1025 + b",1\n")
    assert short == [RejectedRow(2, "inference id longer than 2048 bytes", "\u00e9" * RAW_TEXT_LIMIT + "...")]


def test_labels_a_lone_surrogate_escape_in_json_is_rejected_as_not_valid_unicode() -> None:
    data = (
        b'{"inference_id": "m-0", "label": "\\ud800"}\n'
        b'{"inference_id": "zz\\udc00", "label": "1"}\n'
        b'{"groundTruthData": {"data": "1"}, "eventMetadata": {"eventId": "\\udbff"}}\n'
        b'{"inference_id": "pair", "label": "\\ud83d\\ude00"}\n'
    )

    rows = _parse(data)

    assert [(r.row, r.reason, r.raw) for r in rows if isinstance(r, RejectedRow)] == [
        (n, "not valid Unicode: a lone surrogate", line)
        for n, line in enumerate(data.decode().split("\n")[:3], 1)
    ]
    assert rows[3] == LabelRow(4, "pair", "\U0001f600")


@pytest.mark.parametrize("layout", ["csv", "json"])
def test_labels_only_bytes_that_fail_to_decode_are_not_utf8_a_real_u_fffd_is_text(layout: str) -> None:
    lines = [("a\ufffd", "1"), ("b", "\ufffd"), ("c", "1")]
    if layout == "csv":
        data = (
            "id,label\n" + "".join(f"{i},{label}\n" for i, label in lines)
        ).encode() + b"d\xe9,1\ne,\xff\n"
    else:
        data = "".join(json.dumps({"id": i, "label": label}, ensure_ascii=False) + "\n" for i, label in lines)
        data = data.encode() + b'{"id": "d\xe9", "label": "1"}\n{"id": "e", "label": "\xff"}\n'

    rows = _parse(data)

    assert [(r.inference_id, r.label) for r in rows if isinstance(r, LabelRow)] == lines
    rejected = [r for r in rows if isinstance(r, RejectedRow)]
    assert [r.reason for r in rejected] == ["not valid UTF-8"] * 2
    assert all(r.raw.count("\ufffd") == 1 and r.raw.encode() for r in rejected)


@pytest.mark.parametrize("text", ["zz\udc00", "\ud800", "a\udfffb\ud83d", "\U0001f600 \ufffd é"])
def test_labels_rejected_rows_are_written_whatever_text_they_hold(text: str) -> None:
    read = [RejectedRow(1, f"bad {text}", text), RejectedRow(3, "missing label", text, text)]
    with RejectedRows(ids=[text], lines=RowTexts({2: text})) as rows:
        rows.extend(read)
        rows.reject(np.array([2]), np.array([0]), f"unknown label {text!r}")
        written = rows.jsonl().read()

        assert [json.loads(line) for line in written.decode("utf-8").splitlines()] == [
            {"row": 1, "reason": f"bad {text}", "inference_id": None, "raw": text},
            {"row": 2, "reason": f"unknown label {text!r}", "inference_id": text, "raw": text},
            {"row": 3, "reason": "missing label", "inference_id": text, "raw": text},
        ]
        assert list(rows) == [*read[:1], RejectedRow(2, f"unknown label {text!r}", text, text), read[1]]
    assert rejected_jsonl(read).decode("utf-8").count("\n") == 2


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"inferenceId": 0, "eventId": "e"}, LabelRow(1, "0", "1")),
        ({"inferenceId": "", "eventId": "e"}, LabelRow(1, "e", "1")),
        ({"inferenceId": "  ", "eventId": "e"}, LabelRow(1, "e", "1")),
        ({"inferenceId": None, "eventId": "e"}, LabelRow(1, "e", "1")),
        ({"inferenceId": False, "eventId": "e"}, "inference id is a boolean"),
        ({"inferenceId": [], "eventId": "e"}, "inference id is a JSON array, expected a string or number"),
        ({"inferenceId": {}, "eventId": "e"}, "inference id is a JSON object, expected a string or number"),
    ],
)
def test_labels_sagemaker_falls_back_to_event_id_only_when_inference_id_is_absent(
    metadata: dict[str, object], expected: LabelRow | str
) -> None:
    [row] = _parse(json.dumps({"groundTruthData": {"data": "1"}, "eventMetadata": metadata}).encode())

    assert row == expected if isinstance(expected, LabelRow) else row.reason == expected  # type: ignore[union-attr]


def test_labels_sagemaker_lines_of_the_wrong_shape_say_which_part_is_wrong() -> None:
    lines = [
        {"groundTruthData": "1", "eventMetadata": {"inferenceId": "m-1"}},
        {"groundTruthData": None, "eventMetadata": {"eventId": "m-2"}},
        {"groundTruthData": [], "eventMetadata": {"eventId": "m-3"}},
        {"groundTruthData": {"data": "1"}, "eventMetadata": "m-4"},
        {"groundTruthData": {"data": "1"}, "eventMetadata": None},
        {"groundTruthData": {"data": None}, "eventMetadata": {"eventId": "m-6"}},
    ]

    rows = _parse("\n".join(json.dumps(line) for line in lines).encode())

    assert [r.reason for r in rows] == [  # type: ignore[union-attr]
        "groundTruthData is a JSON string, expected an object",
        "groundTruthData is a JSON null, expected an object",
        "groundTruthData is a JSON array, expected an object",
        "eventMetadata is a JSON string, expected an object",
        "missing inference id",
        "missing label",
    ]


def test_labels_a_json_line_that_is_no_object_names_its_json_type() -> None:
    rows = _parse(b'{"id": "a", "label": "1"}\nnull\n[1]\n"s"\n3\n1.5\ntrue\n')

    assert [r.reason for r in rows[1:]] == [  # type: ignore[union-attr]
        f"a JSON {kind}, expected an object"
        for kind in ("null", "array", "string", "number", "number", "boolean")
    ]


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        ("utf-16", "not valid UTF-8: the file is UTF-16LE (byte-order mark FF FE); save it as UTF-8"),
        (
            "utf-16-be",
            "not valid UTF-8: the file looks like UTF-16BE (NUL bytes between the characters); "
            "save it as UTF-8",
        ),
        ("utf-32", "not valid UTF-8: the file is UTF-32LE (byte-order mark FF FE 00 00); save it as UTF-8"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_labels_a_utf16_or_utf32_file_has_each_row_rejected_once_with_one_reason(
    encoding: str, reason: str, compress: bool
) -> None:
    text = "inference_id,label\r\nm-0,0\r\nm-1,1\r\n\r\nm-2,x\r\n"  # Excel's "Unicode text" ends lines so
    data = text.encode(encoding)

    rows = _parse(gzip.compress(data) if compress else data)

    expected = [(2, "m-0,0", "m-0"), (3, "m-1,1", "m-1"), (5, "m-2,x", "m-2")]
    assert rows == [RejectedRow(n, reason, raw, inference_id) for n, raw, inference_id in expected]


def test_labels_a_utf16_file_with_bytes_it_cannot_decode_is_still_read() -> None:
    text = "inference_id,label\nm-0,0\nm-1,".encode("utf-16-le")
    data = b"\xff\xfe" + text + b"\x00\xd8\n\x00x"  # an unpaired surrogate, then an odd byte

    rows = _parse(data)

    assert [(r.row, r.reason.split(":")[0], r.raw) for r in rows] == [  # type: ignore[union-attr]
        (2, "not valid UTF-8", "m-0,0"),
        (3, "not valid UTF-8", "m-1,\ufffd"),
        (4, "not valid UTF-8", "\ufffd"),
    ]


def test_labels_line_spool_gives_back_any_line_by_its_number() -> None:
    lines = [f"id-{i},{'é' if i % 3 == 0 else 'x'}{i}\r\n" for i in range(20_000)]
    lines[9] = "bad\udcff,byte\n"  # bytes that were not UTF-8, as surrogateescape decodes them
    lines[10] = "long," + "y" * 5000 + "\n"
    spool = LineSpool()
    try:
        spool.add(lines[:9000])
        spool.add(lines[9000:])
        for number in (1, 2, 8192, 8193, 9000, 9001, 16_384, 20_000):
            assert spool.line(number) == lines[number - 1].rstrip("\r\n")
        assert spool.line(10) == "bad\ufffd,byte"
        assert spool.line(11) == "long," + "y" * 995 + "..."
        assert (spool.line(0), spool.line(20_001)) == ("", "")
    finally:
        spool.close()
