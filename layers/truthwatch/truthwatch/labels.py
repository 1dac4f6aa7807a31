"""Ground-truth label files: streamed, decompressed, parsed row by row, every row accounted for.

Three layouts are read, each optionally gzip-compressed (detected by its magic bytes, not the
name):

* **CSV** with a header row. The id column is the first of ``inference_id``, ``inferenceId`` or
  ``id``, the label column the first of ``label``, ``ground_truth`` or ``y_true``; header names are
  trimmed and matched ignoring case, ``_``, ``-`` and spaces. A byte-order mark, CRLF line ends,
  quoted fields and blank lines are fine; extra columns are ignored. Every line is one row: an id
  and a label never hold a line end, so a quote left open at the end of a line rejects that line
  (``unterminated quote``) instead of swallowing the lines after it.
* **JSON lines** with the same field names (extra fields ignored).
* **SageMaker Model Monitor ground truth** lines: the label is ``groundTruthData.data``, the id
  ``eventMetadata.inferenceId``, falling back to ``eventMetadata.eventId``.

A file whose first non-blank line starts with ``{`` is JSON lines, anything else CSV.

Two ways a read can end early are told apart. A failure of the byte stream itself (a read timeout,
a connection cut, an incomplete body) says nothing about the file, so it is raised as
:class:`LabelStreamError` and the invocation is retried. Damage in the file (a gzip stream cut short,
bytes after its end, a wrong checksum, corrupt compressed data) will be there on every retry, so
the rows read before it are kept and the damage becomes one rejected row, ``damaged file: ...``,
numbered with the line where reading stopped; a line cut in half by the damage is its ``raw`` text.

:func:`parse_label_batches` reads the rows into :class:`LabelBatch` columns (lists of row numbers,
ids and labels, plus the rejected rows), which is what the metrics function uses: one Python list
append per field instead of an object per row. :func:`parse_label_stream` yields the same rows one
:class:`LabelRow` or :class:`RejectedRow` at a time, in row order (blank lines and the CSV header are
not rows). A label is kept as trimmed text here; whether it names a class is decided
later by :class:`LabelResolver`, against the model card of the prediction the row joins to.

Examples
--------
>>> import io
>>> rows = list(parse_label_stream(io.BytesIO(b"id,label\\na-1, 3 \\nb-2,\\n")))
>>> rows[0]
LabelRow(row=2, inference_id='a-1', label='3')
>>> rows[1].reason
'missing label'
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import mmap
import re
import tempfile
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from truthwatch.errors import TruthwatchError
from truthwatch.report import json_utf8

GZIP_MAGIC = b"\x1f\x8b"
READ_BUFFER_BYTES = 1 << 20
RAW_TEXT_LIMIT = 1000
"""Characters of a rejected row's text kept in ``rejected/`` (the rest is cut, marked with ``...``)."""

MAX_ID_BYTES = 2048
"""DynamoDB's limit for a partition key value; a longer id could never match and would fail the lookup."""

ID_FIELDS = ("inferenceid", "id")
LABEL_FIELDS = ("label", "groundtruth", "ytrue")
_ID_ALIASES = ("inference_id", "inferenceId", "id")
_LABEL_ALIASES = ("label", "ground_truth", "y_true")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""Bytes that are not UTF-8 decode to lone surrogates (``surrogateescape``); so does a JSON ``\\ud800``."""
NOT_UTF8 = "not valid UTF-8"
LONE_SURROGATE = "not valid Unicode: a lone surrogate"
ASCII_SPACE = " \t\n\r\x0b\x0c"
"""What is trimmed from a label: ASCII whitespace only, so ``"\\u00a01"`` is not the label ``"1"``."""
_INDEX = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.0+)?")
"""A class index as a label may write it: ASCII digits, no sign, no leading zero, maybe ``.0...``."""


class JsonNumber(str):
    """A JSON number as written in the file (``1``, ``1.0``, ``1e0``, ``-0``), never converted.

    A label is judged by its text, the same rule for a CSV cell, a JSON string and a JSON number:
    ``1e0`` or ``0.99999999999999999`` would become ``1.0`` as a float and pass for class 1, and a
    5,000-digit integer would fail Python's integer-string limit instead of being a plain
    unknown label.
    """

    __slots__ = ()


_json_string = json.encoder.encode_basestring
"""A str as a JSON string literal, non-ASCII kept: ``json.dumps(text, ensure_ascii=False)``."""

_JSON = json.JSONDecoder(parse_int=JsonNumber, parse_float=JsonNumber)
"""Numbers stay their literal text; ``NaN`` and ``Infinity`` still become floats (rejected as not finite)."""


class LabelStreamError(TruthwatchError):
    """Reading the label object's bytes failed part-way (timeout, connection cut): retry the invocation.

    The file may be perfectly fine, so nothing read so far is used; the message names the
    underlying error.
    """


DAMAGED_FILE = "damaged file"
"""The reason, before its detail, of the row that stands for the unreadable rest of a damaged file."""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One well-formed row: an inference id and its label text (trimmed, not yet resolved)."""

    row: int
    inference_id: str
    label: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row refused: the reason, its line as read (cut to :data:`RAW_TEXT_LIMIT`), its id when known.

    ``inference_id`` is None when the line holds no usable id (missing, not valid UTF-8, too long,
    or a line that could not be read into fields at all).
    """

    row: int
    reason: str
    raw: str
    inference_id: str | None = None

    def to_json(self) -> dict[str, object]:
        """The line written to ``rejected/<label key>.jsonl``."""
        return {"row": self.row, "reason": self.reason, "inference_id": self.inference_id, "raw": self.raw}


ParsedRow = LabelRow | RejectedRow

BATCH_ROWS = 1 << 16
"""Well-formed rows per :class:`LabelBatch`."""


@dataclass(slots=True)
class LabelBatch:
    """Consecutive rows of a label file as columns: ``rows[i]``, ``ids[i]`` and ``labels[i]`` belong together.

    ``rejected`` holds the refused rows among the same lines; both are in row order. ``read`` is
    the number of data rows among the lines, counted from the lines themselves (the non-blank ones,
    the header aside), not from the columns: a row lost between the two would show as a difference.
    """

    rows: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    read: int = 0
    damage: str | None = None
    """Set on the last batch of a damaged file: what stopped the reading (also its last rejected row)."""

    def __len__(self) -> int:
        return len(self.ids) + len(self.rejected)

    def add(self, parsed: ParsedRow) -> None:
        """Append one parsed row to its column or to ``rejected``."""
        if isinstance(parsed, LabelRow):
            self.rows.append(parsed.row)
            self.ids.append(parsed.inference_id)
            self.labels.append(parsed.label)
        else:
            self.rejected.append(parsed)

    def parsed(self) -> list[ParsedRow]:
        """The rows as objects, in row order."""
        good: list[ParsedRow] = [
            LabelRow(*fields) for fields in zip(self.rows, self.ids, self.labels, strict=True)
        ]
        return sorted([*good, *self.rejected], key=lambda r: r.row)


class Readable(Protocol):
    """Anything with ``read(n)``: a file, ``io.BytesIO``, a botocore ``StreamingBody``."""

    def read(self, amt: int | None = ..., /) -> bytes: ...


class _RawStream(io.RawIOBase):
    """Adapts anything with ``read(n)`` (a botocore ``StreamingBody``) to ``io`` buffering and peeking.

    Whatever the body raises is a failure to read, not a fact about the file, and becomes
    :class:`LabelStreamError`, which is not an ``OSError``: the gzip reader's errors (all of them
    about the content) stay apart from it.
    """

    def __init__(self, body: Readable) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        # botocore raises its own errors, urllib3's and the socket's; any of them means the same.
        except Exception as exc:
            raise LabelStreamError(f"reading the label object failed ({type(exc).__name__}: {exc})") from exc
        size = len(data)
        buffer[:size] = data
        return size


class _Inflated(io.RawIOBase):
    """The decompressed bytes of a gzip stream; damage ends them early and is kept in ``damage``.

    ``read1`` asks the gzip reader for one decompression step at a time, and a step that fails has
    produced nothing, so every byte decompressed before the damage is handed on.
    """

    def __init__(self, compressed: IO[bytes]) -> None:
        self._gzip = gzip.GzipFile(fileobj=compressed, mode="rb")
        self.damage: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.damage is not None:
            return 0
        try:
            data = self._gzip.read1(len(buffer))
        except (OSError, EOFError, zlib.error) as exc:
            self.damage = str(exc) or type(exc).__name__
            return 0
        size = len(data)
        buffer[:size] = data
        return size


class _LabelText:
    """The text lines of a label object, a chunk at a time, and the damage that ended them, if any."""

    def __init__(self, body: Readable, lines: LineSpool | None = None) -> None:
        self._lines = lines
        buffered = io.BufferedReader(_RawStream(body), buffer_size=READ_BUFFER_BYTES)
        self._inflated: _Inflated | None = None
        binary: io.BufferedReader[Any] = buffered  # (peek) the raw stream or its inflated bytes
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            self._inflated = _Inflated(buffered)
            binary = io.BufferedReader(self._inflated, buffer_size=READ_BUFFER_BYTES)
        encoding, self.foreign = _wide_encoding(binary.peek(_SNIFF_BYTES)[:_SNIFF_BYTES])
        # Bytes that are not UTF-8 become lone surrogates (U+DC80..U+DCFF), which no valid text
        # holds, so a row holding one is rejected as not UTF-8 while a real U+FFFD is a character
        # like any other. Not "utf-8-sig": its decoder drops a file of one or two bytes that begin
        # a byte-order mark (b"\xef") instead of passing them on; the mark is taken off the first
        # line below (and a UTF-16 or UTF-32 one, decoded, is the same U+FEFF).
        # A file in another encoding is refused row by row, so its undecodable bytes only need to
        # be readable ("surrogateescape" cannot stand for bytes below 0x80, which UTF-16 has).
        errors = "surrogateescape" if self.foreign is None else "replace"
        self._text = io.TextIOWrapper(binary, encoding=encoding, errors=errors, newline="")
        self.lines_read = 0
        self.tail = ""
        self.chunk: list[str] = []
        """The lines of the last chunk handed out; its first is line ``chunk_start + 1``."""
        self.chunk_start = 0

    @property
    def damage(self) -> str | None:
        """What stopped the decompression before the end of the stream, or None."""
        return self._inflated.damage if self._inflated is not None else None

    def chunks(self, size: int = BATCH_ROWS) -> Iterator[list[str]]:
        """Lists of up to ``size`` lines, each with its line end, in file order.

        A damaged file's last line, when the damage cut it before its line end, is held back in
        ``tail``: it was not read whole, so it is no row of its own.
        """
        while chunk := list(itertools.islice(self._text, size)):
            if self.lines_read == 0 and chunk[0].startswith("\ufeff"):
                chunk[0] = chunk[0][1:]
            if self.damage is not None and not chunk[-1].endswith(("\n", "\r")):
                self.tail = chunk.pop()
            self.chunk, self.chunk_start = chunk, self.lines_read
            self.lines_read += len(chunk)
            if chunk:
                if self._lines is not None:
                    self._lines.add(chunk)
                yield chunk

    def damage_row(self) -> RejectedRow | None:
        """The rejected row standing for the unreadable rest of a damaged file, or None."""
        if self.damage is None:
            return None
        line = self.lines_read + 1
        reason = f"{DAMAGED_FILE}: cannot be read past line {self.lines_read} ({self.damage})"
        return RejectedRow(line, reason, _cut(self.tail.rstrip("\r\n")))


_SNIFF_BYTES = 512
_BYTE_ORDER_MARKS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32BE"),
    (b"\xff\xfe", "utf-16-le", "UTF-16LE"),
    (b"\xfe\xff", "utf-16-be", "UTF-16BE"),
)


def _wide_encoding(head: bytes) -> tuple[str, str | None]:
    """The codec to read a file starting with ``head`` and, when it is not UTF-8, why it is refused.

    Excel's "Unicode text" and PowerShell write UTF-16 with a byte-order mark; read as UTF-8 every
    line was garbled and a trailing NUL made a row of its own. Such a file (UTF-16 or UTF-32 by its
    mark, or without one by NUL in over 90% of the places a wide encoding leaves empty for ASCII
    text and under 10% of the others) is decoded with its own codec, so its lines and rows are
    counted as they are, and every row is rejected with one reason saying what the file is.
    """
    for mark, codec, name in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return codec, _not_utf8_file(f"is {name} (byte-order mark {mark.hex(' ').upper()})")
    if len(head) < 8:
        return "utf-8", None

    def nul(start: int, step: int) -> float:
        return head[start::step].count(0) / len(head[start::step])

    guesses = (
        ("utf-32-le", "UTF-32LE", min(nul(1, 4), nul(2, 4), nul(3, 4)), nul(0, 4)),
        ("utf-32-be", "UTF-32BE", min(nul(0, 4), nul(1, 4), nul(2, 4)), nul(3, 4)),
        ("utf-16-le", "UTF-16LE", nul(1, 2), nul(0, 2)),
        ("utf-16-be", "UTF-16BE", nul(0, 2), nul(1, 2)),
    )
    for codec, name, empty, other in guesses:
        if empty > 0.9 and other < 0.1:
            return codec, _not_utf8_file(f"looks like {name} (NUL bytes between the characters)")
    return "utf-8", None


def _not_utf8_file(what: str) -> str:
    return f"{NOT_UTF8}: the file {what}; save it as UTF-8"


def parse_label_stream(body: Readable) -> Iterator[ParsedRow]:
    """Parse a label object (CSV, JSON lines or SageMaker ground truth, maybe gzipped) row by row.

    The rows of :func:`parse_label_batches`, one object each, in row order.

    Raises
    ------
    LabelStreamError
        When reading the bytes fails part-way (see the module docstring).
    """
    for batch in parse_label_batches(body):
        yield from batch.parsed()


def parse_label_batches(
    body: Readable, batch_rows: int = BATCH_ROWS, lines: LineSpool | None = None
) -> Iterator[LabelBatch]:
    """Parse a label object (CSV, JSON lines or SageMaker ground truth, maybe gzipped) in batches.

    Each batch holds the rows of up to ``batch_rows`` consecutive lines. ``row`` is the line number
    in the decompressed text. A rejected row's ``raw`` is its line as read, and ``inference_id``
    its id when the line holds a usable one. A damaged file ends with one more batch holding the
    ``damaged file`` row, with ``damage`` set. ``lines``, when given, keeps every line read, so
    that rows refused later (at the join) are written with their line too.

    Raises
    ------
    LabelStreamError
        When reading the bytes fails part-way: the file may be fine, so the caller fails the
        invocation for a retry instead of using the rows read so far.
    """
    text = _LabelText(body, lines)
    chunks = text.chunks(batch_rows)
    before = 0
    for chunk in chunks:
        first = next((i for i, line in enumerate(chunk) if line.strip()), None)
        if first is None:
            before += len(chunk)
            continue
        rest = itertools.chain([chunk[first:]], chunks)
        parse = _json_batches if chunk[first].lstrip().startswith("{") else _csv_batches
        batches = parse(rest, before + first)
        yield from batches if text.foreign is None else _refused(batches, text, text.foreign)
        break

    damage = text.damage_row()
    if damage is not None:
        yield LabelBatch(rejected=[damage], read=1, damage=damage.reason)


def _refused(batches: Iterator[LabelBatch], text: _LabelText, reason: str) -> Iterator[LabelBatch]:
    """The rows of a file in another encoding, each rejected with ``reason`` and its line as read.

    The file was read with its own codec, so the rows are the lines they look like; each batch
    comes from the chunk of lines last handed out.
    """
    for batch in batches:
        ids = dict(zip(batch.rows, batch.ids, strict=True))
        ids.update((r.row, r.inference_id) for r in batch.rejected if r.inference_id is not None)
        numbers = sorted([*batch.rows, *(r.row for r in batch.rejected)])
        lines = text.chunk
        rejected = [
            RejectedRow(n, reason, _as_read(lines[n - text.chunk_start - 1]), ids.get(n)) for n in numbers
        ]
        yield LabelBatch(rejected=rejected, read=batch.read)


def _cut(text: str) -> str:
    """Text of a row for ``rejected/`` or a reason: at most :data:`RAW_TEXT_LIMIT` characters, valid Unicode.

    Undecodable bytes (and lone surrogates from any source) show as U+FFFD, so the text can
    always be written as UTF-8.
    """
    text = text if len(text) <= RAW_TEXT_LIMIT else text[:RAW_TEXT_LIMIT] + "..."
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _as_read(line: str) -> str:
    return _cut(line.rstrip("\r\n"))


def _data_lines(lines: list[str]) -> int:
    """Non-blank lines: every one of them is a row."""
    return sum(map(bool, map(str.strip, lines)))


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def _find_column(header: list[str], wanted: tuple[str, ...]) -> int | None:
    names = [_normalise_name(h) for h in header]
    for candidate in wanted:
        if candidate in names:
            return names.index(candidate)
    return None


UNTERMINATED_QUOTE = "unterminated quote"
TOO_DEEP = "not valid JSON (nested too deeply)"


def _line_fields(line: str) -> list[str] | str:
    """The CSV fields of one line read on its own, or why it is no record: a quote left open, an error.

    The line is given exactly one line end, so a quoted field still open at the end holds it.
    """
    try:
        fields = next(csv.reader((line.rstrip("\r\n") + "\n",)), [])
    except csv.Error as exc:
        return f"malformed CSV ({exc})"
    if fields and fields[-1].endswith("\n"):
        return UNTERMINATED_QUOTE
    return fields


def _csv_batches(chunks: Iterator[list[str]], offset: int) -> Iterator[LabelBatch]:
    """CSV rows, a batch per chunk of lines; the first chunk starts with the header, line ``offset + 1``."""
    lines = next(chunks)
    header = _line_fields(lines[0])
    if isinstance(header, str):
        reason = f"the header {_as_read(lines[0].strip())!r} is no CSV header ({header})"
        yield from _reject_every_line(itertools.chain([lines], chunks), offset, reason)
        return
    id_column = _find_column(header, ID_FIELDS)
    label_column = _find_column(header, LABEL_FIELDS)
    if id_column is None or label_column is None:
        no_id = id_column is None
        reason = (
            f"the header {_cut(','.join(h.strip() for h in header))!r} names no "
            f"{'inference id' if no_id else 'label'} column "
            f"(expected one of {', '.join(_ID_ALIASES if no_id else _LABEL_ALIASES)})"
        )
        yield from _reject_every_line(itertools.chain([lines], chunks), offset, reason)
        return

    columns = _CsvColumns(id_column, label_column, max(id_column, label_column) + 1)
    before = offset + 1
    for chunk in itertools.chain([lines[1:]], chunks):
        if not chunk:
            continue
        batch = columns.read(chunk, before)
        batch.read = _data_lines(chunk)
        before += len(chunk)
        yield batch


@dataclass(frozen=True)
class _CsvColumns:
    """Where the id and label are in a CSV file's rows; reads its lines, one row per line.

    A label row never holds a line end, so a quoted field is never allowed to run over one: a line
    whose quote is left open is rejected (``unterminated quote``) and the next line is read as a
    row of its own, where the ``csv`` module would have read on until some later quote, swallowing
    the lines in between into one field.
    """

    id_at: int
    label_at: int
    width: int

    def read(self, lines: list[str], before: int) -> LabelBatch:
        """The rows of consecutive ``lines``; ``before`` lines of the file come before the first."""
        batch = self._fast(lines, before)
        if batch is None:
            batch = self._careful(lines, before)
        _screen_unicode(batch, lines, before)
        return batch

    def _fast(self, lines: list[str], before: int) -> LabelBatch | None:
        """Every line through one C reader; None when some line turns out not to be a record alone."""
        if '"' in lines[-1] and isinstance(_line_fields(lines[-1]), str):
            return None  # the reader would take the end of the chunk for the close of the quote
        batch = LabelBatch()
        reader = csv.reader(lines)
        try:
            last = self._take(enumerate(reader, start=before + 1), lines, before, batch)
        except csv.Error:
            return None
        if reader.line_num != last - before:
            return None  # some record took more than one line: a quoted field ran over a line end
        return batch

    def _careful(self, lines: list[str], before: int) -> LabelBatch:
        """Reject the lines that are no record on their own, then read the others through one reader.

        Only a line holding a quote, or longer than the field size limit, can fail alone; each is
        read alone, and a failing one is blanked out of the batch, so every line left is one record.
        """
        batch = LabelBatch()
        clean = list(lines)
        limit = csv.field_size_limit()
        for i, line in enumerate(lines):
            if '"' in line or len(line) > limit:
                problem = _line_fields(line)
                if isinstance(problem, str):
                    clean[i] = "\n"
                    batch.rejected.append(RejectedRow(before + i + 1, problem, _as_read(line)))
        self._take(enumerate(csv.reader(clean), start=before + 1), clean, before, batch)
        batch.rejected.sort(key=lambda r: r.row)
        return batch

    def _take(
        self, records: Iterable[tuple[int, list[str]]], lines: list[str], before: int, batch: LabelBatch
    ) -> int:
        """The hot loop: a well-formed row costs two strips and three appends, no object of its own.

        Returns the number of the last record's line.
        """
        id_at, label_at, width = self.id_at, self.label_at, self.width
        rows, ids, labels = batch.rows, batch.ids, batch.labels
        short = MAX_ID_BYTES // 4  # at most 4 bytes a character in UTF-8
        number = before
        for number, fields in records:
            if len(fields) >= width:
                inference_id = fields[id_at].strip()
                label = fields[label_at].strip(ASCII_SPACE)
                if inference_id and label and len(inference_id) <= short:
                    rows.append(number)
                    ids.append(inference_id)
                    labels.append(label)
                    continue
                batch.add(_checked(number, inference_id, label, lines[number - before - 1]))
            elif (line := lines[number - before - 1]).strip():
                reason = f"row has {len(fields)} fields, the id and label columns need {width}"
                known = _known_id(fields[id_at]) if id_at < len(fields) else None
                batch.rejected.append(RejectedRow(number, reason, _as_read(line), known))
        return number


def _screen_unicode(batch: LabelBatch, lines: list[str], before: int) -> None:
    """Move rows holding a lone surrogate to ``rejected``; ``lines`` are the batch's, after ``before``.

    A surrogate comes from bytes that were not UTF-8, or from a JSON escape such as ``\\ud800``;
    neither can be written out as UTF-8 nor be an inference id. One check per batch: an ASCII
    batch has none, and encoding the rest finds one.
    """
    text = "".join(batch.ids) + "".join(batch.labels)
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return
    kept = LabelBatch(rejected=batch.rejected)
    for row, inference_id, label in zip(batch.rows, batch.ids, batch.labels, strict=True):
        kept.add(_checked(row, inference_id, label, lines[row - before - 1]))
    batch.rows, batch.ids, batch.labels = kept.rows, kept.ids, kept.labels
    batch.rejected.sort(key=lambda r: r.row)


def _reject_every_line(chunks: Iterable[list[str]], offset: int, reason: str) -> Iterator[LabelBatch]:
    """Without a usable header every non-blank line, the header too, is a row to account for, and rejected."""
    before = offset
    for chunk in chunks:
        numbered = enumerate(chunk, start=before + 1)
        rejected = [RejectedRow(n, reason, _as_read(line)) for n, line in numbered if line.strip()]
        yield LabelBatch(rejected=rejected, read=_data_lines(chunk))
        before += len(chunk)


def _checked(row: int, inference_id: str, label: str, line: str) -> ParsedRow:
    """A row of ``line`` after its fields are read: a :class:`LabelRow`, or rejected with the reason."""
    inference_id = inference_id.strip()
    label = label.strip(ASCII_SPACE)
    short = len(inference_id) <= MAX_ID_BYTES // 4  # at most 4 bytes a character in UTF-8
    unicode = not _has_surrogate(label + inference_id)
    if inference_id and label and short and unicode:
        return LabelRow(row, inference_id, label)

    raw = _as_read(line)
    known = _known_id(inference_id)
    if not inference_id:
        return RejectedRow(row, "missing inference id", raw)
    if not label:
        return RejectedRow(row, "missing label", raw, known)
    if not unicode:
        # In the line itself, the surrogate stands for bytes that were not UTF-8; otherwise it
        # came from a JSON escape of half a surrogate pair.
        return RejectedRow(row, NOT_UTF8 if _has_surrogate(line) else LONE_SURROGATE, raw, known)
    if len(inference_id.encode("utf-8")) > MAX_ID_BYTES:
        return RejectedRow(row, f"inference id longer than {MAX_ID_BYTES} bytes", raw)
    return LabelRow(row, inference_id, label)


def _known_id(text: str) -> str | None:
    """``text`` trimmed, when it can stand as a rejected row's ``inference_id``; else None."""
    inference_id = text.strip()
    if not inference_id or _has_surrogate(inference_id) or len(inference_id.encode("utf-8")) > MAX_ID_BYTES:
        return None
    return inference_id


def _json_batches(chunks: Iterator[list[str]], offset: int) -> Iterator[LabelBatch]:
    """JSON lines, a batch per chunk of lines; the first chunk starts at line ``offset + 1``."""
    before = offset
    for chunk in chunks:
        batch = _json_lines(chunk, before)
        batch.read = _data_lines(chunk)
        before += len(chunk)
        yield batch


def _json_lines(lines: list[str], before: int) -> LabelBatch:
    """The rows of consecutive JSON lines; ``before`` lines of the file come before the first.

    The common documents (``inference_id`` and ``label``, or SageMaker's ground truth, as text or
    integers) go straight into the columns; anything else takes the general path of
    :func:`_json_row`, which gives the same answer for those and the reasons for the rest.
    """
    batch = LabelBatch()
    rows, ids, labels = batch.rows, batch.ids, batch.labels
    short = MAX_ID_BYTES // 4
    loads = _JSON.decode
    for number, line in enumerate(lines, start=before + 1):
        try:
            document = loads(line)
        except ValueError as exc:
            if line.strip():
                reason = f"not valid JSON ({exc.args[0] if exc.args else exc})"
                batch.rejected.append(RejectedRow(number, reason, _as_read(line)))
            continue
        except RecursionError:
            # The C decoder gives up past the interpreter's recursion limit (about 1,000 levels);
            # that is about this line, not the file, so it is one rejected row.
            batch.rejected.append(RejectedRow(number, TOO_DEEP, _as_read(line)))
            continue
        pair = _plain_pair(document)
        if pair is not None:
            inference_id, label = pair[0].strip(), pair[1].strip(ASCII_SPACE)
            if inference_id and label and len(inference_id) <= short:
                rows.append(number)
                ids.append(inference_id)
                labels.append(label)
                continue
        if not isinstance(document, dict):
            reason = f"a JSON {json_type(document)}, expected an object"
            batch.rejected.append(RejectedRow(number, reason, _as_read(line)))
        else:
            batch.add(_json_row(number, document, line))
    _screen_unicode(batch, lines, before)
    return batch


def _plain_pair(document: Any) -> tuple[str, str] | None:
    """The id and label of a document in one of the two usual shapes, as text; None for anything else."""
    if type(document) is not dict:
        return None
    truth = document.get("groundTruthData", _ABSENT)
    if truth is _ABSENT:
        inference_id, label = document.get("inference_id"), document.get("label")
    elif type(truth) is dict and type(metadata := document.get("eventMetadata")) is dict:
        inference_id = metadata.get("inferenceId")
        if inference_id is None or inference_id == "":  # a blank one takes the general path
            inference_id = metadata.get("eventId")
        label = truth.get("data")
    else:
        return None
    # JSON numbers are JsonNumber, a str as written; anything else takes the general path.
    if isinstance(inference_id, str) and isinstance(label, str):
        return inference_id, label
    return None


_ABSENT = object()


def _json_row(row: int, document: dict[str, Any], line: str) -> ParsedRow:
    shape = None
    if "groundTruthData" in document:
        shape = _sagemaker_shape(document)
        truth, metadata = document["groundTruthData"], document.get("eventMetadata")
        id_value = _sagemaker_id(metadata) if isinstance(metadata, dict) else None
        label_value = truth.get("data") if isinstance(truth, dict) else None
    else:
        id_value = _field(document, _ID_ALIASES, ID_FIELDS)
        label_value = _field(document, _LABEL_ALIASES, LABEL_FIELDS)

    inference_id, id_problem = _json_text(id_value, "inference id")
    known = None if id_problem else _known_id(inference_id)
    problem = shape or id_problem
    if problem is None:
        label, problem = _json_text(label_value, "label")
        if problem is None:
            return _checked(row, inference_id, label, line)
    return RejectedRow(row, problem, _as_read(line), known)


def _sagemaker_shape(document: dict[str, Any]) -> str | None:
    """Why a SageMaker ground-truth document has not the shape to hold an id and a label, or None."""
    truth, metadata = document["groundTruthData"], document.get("eventMetadata")
    if not isinstance(truth, dict):
        return f"groundTruthData is a JSON {json_type(truth)}, expected an object"
    if metadata is not None and not isinstance(metadata, dict):
        return f"eventMetadata is a JSON {json_type(metadata)}, expected an object"
    return None


def _sagemaker_id(metadata: dict[str, Any]) -> Any:
    """``inferenceId``, or ``eventId`` when it is missing, null or blank; any other value is the id.

    A number is its literal (``0`` is the id ``"0"``); a boolean, array or object is rejected with
    its type. Only an absent id falls back, so a malformed one is never silently replaced.
    """
    value = metadata.get("inferenceId")
    if value is None or (isinstance(value, str) and not value.strip()):
        return metadata.get("eventId")
    return value


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type: null, boolean, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, JsonNumber | int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _field(document: dict[str, Any], exact: tuple[str, ...], normalised: tuple[str, ...]) -> Any:
    for name in exact:
        if name in document:
            return document[name]
    names = {_normalise_name(k): v for k, v in document.items() if isinstance(k, str)}
    for name in normalised:
        if name in names:
            return names[name]
    return None


def _json_text(value: Any, what: str) -> tuple[str, str | None]:
    """A JSON scalar as trimmed text, or the reason it cannot be one."""
    if value is None:
        return "", f"missing {what}"
    if isinstance(value, bool):
        return "", f"{what} is a boolean"
    if isinstance(value, str):  # a JsonNumber too: its literal, judged like any text
        return str(value), None
    if isinstance(value, float):  # NaN, Infinity, -Infinity: the only numbers decoded as floats
        return "", f"{what} is not a finite number"
    return "", f"{what} is a JSON {json_type(value)}, expected a string or number"


class LabelResolver:
    """Turns label text into a class index of one model card.

    After trimming ASCII whitespace, a label names class ``i`` when, in this order: it is
    ``class_names[i]``; or it is an integer ``n`` written in ASCII digits without sign or leading
    zeros, maybe followed by ``.`` and zeros (``1``, ``1.0``, ``1.00``), and ``str(n)`` is
    ``class_names[i]``; or that ``n`` is a valid index ``0 <= n < len(class_names)``. So ``"1"``,
    ``" 1 "``, ``1`` and ``1.0`` (a JSON number is its literal as written) name the same class,
    and ``"01"``, ``"+1"``, ``"1e0"``, ``"-0"``, ``"1_0"`` or digits of other scripts name none,
    as strings or as JSON numbers (``1e0``, ``-0``, ``0.99999999999999999``).
    Answers are cached, since a file repeats the same few labels.
    """

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self._class_names = class_names
        self._by_name = {name: index for index, name in enumerate(class_names)}
        self._cache: dict[str, int | None] = {}

    def index(self, label: str) -> int | None:
        """The class index ``label`` names, or None when it names none."""
        try:
            return self._cache[label]
        except KeyError:
            pass
        index = self._resolve(label)
        if len(self._cache) < 10_000:
            self._cache[label] = index
        return index

    def reason(self, label: str) -> str:
        """Why ``label`` names no class, for the rejected row."""
        names = self._class_names
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return (
            f"unknown label {_cut(label)[:60]!r} (classes are {shown}, or their indices 0..{len(names) - 1})"
        )

    def _resolve(self, label: str) -> int | None:
        text = label.strip(ASCII_SPACE)
        if text in self._by_name:
            return self._by_name[text]
        written = _INDEX.fullmatch(text)
        if written is None:
            return None
        number = written[1]
        if number in self._by_name:
            return self._by_name[number]
        integral = int(number)
        return integral if integral < len(self._class_names) else None


def rejected_jsonl(rows: Iterable[RejectedRow]) -> bytes:
    """The ``rejected/`` object: one JSON object per line, in row order."""
    ordered = sorted(rows, key=lambda r: r.row)
    return json_utf8("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in ordered))


def reason_kind(reason: str) -> str:
    """The reason without the row-specific detail in quotes or parentheses."""
    return re.split(r" \(| '| \"|: ", reason, maxsplit=1)[0]


SPOOL_BLOCK_BYTES = 1 << 20
"""How much of ``rejected/`` is handed on at a time when it is read back."""


class LineSource(Protocol):
    """Gives the text of a row's line by its number (see :class:`LineSpool`)."""

    def line(self, number: int) -> str:
        """Line ``number`` without its line end, cut to :data:`RAW_TEXT_LIMIT`; empty when unknown."""
        ...

    def close(self) -> None:
        """Free what holds the lines."""
        ...


SPOOL_PART_LINES = 8192
"""Lines encoded and written to a :class:`LineSpool` at a time."""


class LineSpool:
    """Every line of a label file in a temporary file, to give a row's line back by its number.

    Rows refused at the join are known by their line number only. Keeping each line as a Python
    string would cost about 60 bytes a row over its text; here the lines are written as read (bytes
    that were not UTF-8 restored by ``surrogateescape``) and 8 bytes of end offset are kept per
    line. Lines are read back through a memory map, only for the rows that need them.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._ends: list[npt.NDArray[np.int64]] = []
        self._size = 0
        self._map: mmap.mmap | None = None
        self._all_ends: npt.NDArray[np.int64] | None = None

    def add(self, lines: list[str]) -> None:
        """Append the next lines of the file, each with its line end."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="truthwatch-lines-")  # noqa: SIM115 - closed by close()
        # A part at a time, so the text and its bytes held together stay small (a chunk of long
        # lines is tens of megabytes).
        for start in range(0, len(lines), SPOOL_PART_LINES):
            part = lines[start : start + SPOOL_PART_LINES]
            text = "".join(part)
            data = text.encode("utf-8", "surrogateescape")
            if len(data) == len(text):  # ASCII: a character is a byte
                sizes = np.fromiter(map(len, part), np.int64, len(part))
            else:
                sizes = np.fromiter((len(line.encode("utf-8", "surrogateescape")) for line in part), np.int64)
            del text
            self._file.write(data)
            self._ends.append(np.cumsum(sizes) + self._size)
            self._size += len(data)

    def line(self, number: int) -> str:
        """Line ``number`` (from 1) as read, without its line end and cut; empty when never added."""
        ends = self._index()
        if not 0 < number <= len(ends) or self._map is None:
            return ""
        start = int(ends[number - 2]) if number > 1 else 0
        end = min(int(ends[number - 1]), start + 4 * RAW_TEXT_LIMIT + 8)  # enough for the cut
        return _as_read(self._map[start:end].decode("utf-8", "surrogateescape"))

    def close(self) -> None:
        """Remove the temporary file."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _index(self) -> npt.NDArray[np.int64]:
        if self._all_ends is None or len(self._all_ends) != sum(map(len, self._ends)):
            self._all_ends = np.concatenate(self._ends) if self._ends else np.zeros(0, np.int64)
            if self._file is not None and self._size:
                self._file.flush()
                if self._map is not None:
                    self._map.close()
                self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._all_ends


class RowTexts(dict[int, str]):
    """Line texts by row number, for rows that come as objects rather than from a file."""

    def line(self, number: int) -> str:
        """The text of row ``number``, or empty."""
        return self.get(number, "")

    def close(self) -> None:
        """Nothing to free."""


class RejectedRows:
    """Every rejected row of one label file: counted in memory, the rows themselves in a temporary file.

    A file that is mostly refused would otherwise hold an object, its text and its reason per row
    until the end (a million rows of 230 bytes went over a gigabyte). Rows refused while reading
    come in row order and are written at once as the JSON lines of ``rejected/`` to a temporary
    file (``tempfile``'s directory: ``/tmp`` on Lambda), keeping only their row numbers (8 bytes
    each). Rows refused at the join are kept as three integer arrays (row, position of its id,
    reason code), since their reasons are few and shared and their lines are in ``lines``.
    :meth:`jsonl` merges both in row order, a block at a time.

    ``ids`` are the inference ids the join's positions refer to, and ``lines`` gives the text of a
    row's line by its number, so a row refused at the join is written like one refused while
    reading: its id and its line. Close it (or use it as a context manager) to free the files;
    they are removed when closed.
    """

    def __init__(self, ids: Sequence[str] = (), lines: LineSource | None = None) -> None:
        self.ids = ids
        self.lines = lines
        self._spool: IO[bytes] | None = None
        self._spooled_rows = array("q")
        self._by_reason: Counter[str] = Counter()
        self._reason_json: dict[str, str] = {}
        self._reasons: list[str] = []
        self._reason_ids: dict[str, int] = {}
        self._joined: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]] = []

    def __len__(self) -> int:
        return len(self._spooled_rows) + sum(len(rows) for rows, _, _ in self._joined)

    def __iter__(self) -> Iterator[RejectedRow]:
        """The rows in row order, read back from the file (for tests and small files)."""
        for block in self._blocks():
            # Split at line feeds only: a raw text may hold U+2028 or other line ends JSON keeps.
            for line in block.decode("utf-8").split("\n")[:-1]:
                entry = json.loads(line)
                yield RejectedRow(entry["row"], entry["reason"], entry["raw"], entry["inference_id"])

    def __enter__(self) -> RejectedRows:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary files."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self.lines is not None:
            self.lines.close()

    def extend(self, rows: Iterable[RejectedRow]) -> None:
        """Write rows refused while reading; they come in row order, after every earlier one."""
        lines = []
        for rejected in rows:
            lines.append(self._line(rejected.row, rejected.reason, rejected.raw, rejected.inference_id))
            self._spooled_rows.append(rejected.row)
            self._by_reason[rejected.reason] += 1
        if lines:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(prefix="truthwatch-rejected-")  # noqa: SIM115 - closed by close()
            self._spool.write(json_utf8("".join(lines)))

    def reason_id(self, reason: str) -> int:
        """The code of ``reason`` for :meth:`reject`."""
        if reason not in self._reason_ids:
            self._reason_ids[reason] = len(self._reasons)
            self._reasons.append(reason)
        return self._reason_ids[reason]

    def reject(
        self,
        rows: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64],
        reasons: npt.NDArray[np.int32] | str,
    ) -> None:
        """Keep rows refused at the join: line numbers, positions of their ids in ``ids``, reason codes.

        ``reasons`` may be one reason for every row.
        """
        if not len(rows):
            return
        if isinstance(reasons, str):
            reasons = np.full(len(rows), self.reason_id(reasons), dtype=np.int32)
        self._joined.append((np.asarray(rows, np.int64), np.asarray(positions, np.int64), reasons))
        for reason_id, count in enumerate(np.bincount(reasons).tolist()):
            if count:
                self._by_reason[self._reasons[reason_id]] += count

    def kinds(self) -> dict[str, int]:
        """Rejected rows by the kind of their reason (:func:`reason_kind`), the most frequent first."""
        kinds: Counter[str] = Counter()
        for reason, count in self._by_reason.items():
            kinds[reason_kind(reason)] += count
        return dict(kinds.most_common())

    def jsonl(self) -> IO[bytes]:
        """The ``rejected/`` object, one JSON object per line in row order, as a stream to upload."""
        return io.BufferedReader(_BlockStream(self._blocks()), buffer_size=SPOOL_BLOCK_BYTES)

    def _line(self, row: int, reason: str, raw: str, inference_id: str | None) -> str:
        # The layout of json.dumps(RejectedRow.to_json()), with each distinct reason encoded once.
        # encode_basestring is what json.dumps(text, ensure_ascii=False) calls, without its
        # per-call set-up, which cost more than the rest of the line.
        encoded = self._reason_json.get(reason)
        if encoded is None:
            encoded = self._reason_json[reason] = _json_string(reason)
        known = "null" if inference_id is None else _json_string(inference_id)
        return f'{{"row": {row}, "reason": {encoded}, "inference_id": {known}, "raw": {_json_string(raw)}}}\n'

    def _blocks(self) -> Iterator[bytes]:
        """The lines of both kinds merged in row order, about :data:`SPOOL_BLOCK_BYTES` at a time."""
        joined = self._joined_in_order()
        spooled = self._spooled_lines()
        block: list[str] = []
        size = 0
        next_joined = 0
        for row, line in spooled:
            while next_joined < len(joined[0]) and joined[0][next_joined] < row:
                block.append(self._joined_line(joined, next_joined))
                next_joined += 1
            block.append(line)
            size += len(line)
            if size >= SPOOL_BLOCK_BYTES:
                yield json_utf8("".join(block))
                block, size = [], 0
        block.extend(self._joined_line(joined, i) for i in range(next_joined, len(joined[0])))
        if block:
            yield json_utf8("".join(block))

    def _spooled_lines(self) -> Iterator[tuple[int, str]]:
        if self._spool is None:
            return
        self._spool.flush()
        self._spool.seek(0)
        text = io.TextIOWrapper(self._spool, encoding="utf-8", newline="\n")
        try:
            yield from zip(self._spooled_rows, text, strict=True)
        finally:
            text.detach()
            self._spool.seek(0, io.SEEK_END)

    def _joined_in_order(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        if not self._joined:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
        rows, positions, reasons = (np.concatenate(part) for part in zip(*self._joined, strict=True))
        order = np.argsort(rows, kind="stable")
        return rows[order], positions[order], reasons[order]

    def _joined_line(
        self, joined: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]], i: int
    ) -> str:
        rows, positions, reasons = joined
        row = int(rows[i])
        raw = self.lines.line(row) if self.lines is not None else ""
        return self._line(row, self._reasons[reasons[i]], raw, self.ids[positions[i]])


class _BlockStream(io.RawIOBase):
    """Reads an iterator of byte blocks as a stream."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._left = memoryview(block)
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size
