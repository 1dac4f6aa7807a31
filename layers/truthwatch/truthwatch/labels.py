"""Ground-truth label files: streamed, decompressed, parsed row by row, every row accounted for.

Three layouts are read, each optionally gzip-compressed (detected by its magic bytes, not the
name):

* **CSV** with a header row. The id column is the first of ``inference_id``, ``inferenceId`` or
  ``id``, the label column the first of ``label``, ``ground_truth`` or ``y_true``; header names are
  trimmed and matched ignoring case, ``_``, ``-`` and spaces. A byte-order mark, CRLF line ends,
  quoted fields and blank lines are fine; extra columns are ignored.
* **JSON lines** with the same field names (extra fields ignored).
* **SageMaker Model Monitor ground truth** lines: the label is ``groundTruthData.data``, the id
  ``eventMetadata.inferenceId``, falling back to ``eventMetadata.eventId``.

A file whose first non-blank line starts with ``{`` is JSON lines, anything else CSV.

The parser yields one :class:`LabelRow` or :class:`RejectedRow` per data row (blank lines and the
CSV header are not rows). A label is kept as trimmed text here; whether it names a class is decided
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
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from truthwatch.errors import TruthwatchError

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
_NOT_UTF8 = "\ufffd"


class LabelFileError(TruthwatchError):
    """The label object cannot be read to its end (corrupt gzip stream, read failure)."""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One well-formed row: an inference id and its label text (trimmed, not yet resolved)."""

    row: int
    inference_id: str
    label: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row refused, with the reason and its text as read (cut to :data:`RAW_TEXT_LIMIT`)."""

    row: int
    reason: str
    raw: str

    def to_json(self) -> dict[str, object]:
        """The line written to ``rejected/<label key>.jsonl``."""
        return {"row": self.row, "reason": self.reason, "raw": self.raw}


ParsedRow = LabelRow | RejectedRow


class _Readable(Protocol):
    def read(self, amt: int | None = ..., /) -> bytes: ...


class _RawStream(io.RawIOBase):
    """Adapts anything with ``read(n)`` (a botocore ``StreamingBody``) to ``io`` buffering and peeking."""

    def __init__(self, body: _Readable) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


def open_text(body: _Readable) -> IO[str]:
    """Decode a label object's byte stream to text lines, un-gzipping it on the fly when needed.

    Nothing is read ahead beyond one buffer, so memory does not grow with the object. Bytes that are
    not UTF-8 become U+FFFD, and rows holding one are rejected by the parser.
    """
    buffered = io.BufferedReader(_RawStream(body), buffer_size=READ_BUFFER_BYTES)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        unzipped = gzip.GzipFile(fileobj=buffered, mode="rb")
        return io.TextIOWrapper(unzipped, encoding="utf-8-sig", errors="replace", newline="")
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="replace", newline="")


def parse_label_stream(body: _Readable) -> Iterator[ParsedRow]:
    """Parse a label object (CSV, JSON lines or SageMaker ground truth, maybe gzipped) row by row.

    Raises
    ------
    LabelFileError
        When the stream breaks off (a truncated or corrupt gzip member); rows yielded before stay
        valid, and the caller reports the error with them.
    """
    text = open_text(body)
    lines = _LineTracker(text)
    try:
        first = lines.first_content_line()
        if first is None:
            return
        if first.lstrip().startswith("{"):
            yield from _parse_json_lines(lines)
        else:
            yield from _parse_csv(lines)
    except (OSError, EOFError, zlib.error) as exc:
        raise LabelFileError(f"the object cannot be read past line {lines.number} ({exc})") from exc


class _LineTracker:
    """Iterates text lines, numbering them and keeping the lines of the current record."""

    def __init__(self, text: Iterable[str]) -> None:
        self._lines = iter(text)
        self._pending: list[str] = []
        self.number = 0
        self.blank_before = 0
        self.current: list[str] = []

    def first_content_line(self) -> str | None:
        """Skip leading blank lines; push the first other line back and return it (None at the end)."""
        for line in self._lines:
            if line.strip():
                self._pending.append(line)
                return line
            self.number += 1
        return None

    def __iter__(self) -> _LineTracker:
        return self

    def __next__(self) -> str:
        line = self._pending.pop() if self._pending else next(self._lines)
        self.number += 1
        self.current.append(line)
        return line

    def take_record_text(self) -> str:
        """The text of the lines read since the last call, without the final line end."""
        record = "".join(self.current).rstrip("\r\n")
        self.current = []
        return _cut(record)


def _cut(text: str) -> str:
    return text if len(text) <= RAW_TEXT_LIMIT else text[:RAW_TEXT_LIMIT] + "..."


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def _find_column(header: list[str], wanted: tuple[str, ...]) -> int | None:
    names = [_normalise_name(h) for h in header]
    for candidate in wanted:
        if candidate in names:
            return names.index(candidate)
    return None


def _parse_csv(lines: _LineTracker) -> Iterator[ParsedRow]:
    reader = csv.reader(lines)
    header = next(reader)
    lines.take_record_text()
    id_column = _find_column(header, ID_FIELDS)
    label_column = _find_column(header, LABEL_FIELDS)
    missing_header = None
    if id_column is None or label_column is None:
        missing_header = (
            f"the header {_cut(','.join(h.strip() for h in header))!r} names no "
            f"{'inference id' if id_column is None else 'label'} column "
            f"(expected one of {', '.join(_ID_ALIASES if id_column is None else _LABEL_ALIASES)})"
        )
        # The first line is data too when there is no header, so it is a row to account for.
        yield RejectedRow(lines.number, missing_header, _cut(",".join(header)))

    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RejectedRow(lines.number, f"malformed CSV ({exc})", lines.take_record_text())
            continue

        raw = lines.take_record_text()
        if not any(f.strip() for f in fields):
            continue
        if missing_header is not None:
            yield RejectedRow(lines.number, missing_header, raw)
            continue

        width = max(id_column or 0, label_column or 0) + 1
        if len(fields) < width:
            yield RejectedRow(
                lines.number, f"row has {len(fields)} fields, the id and label columns need {width}", raw
            )
            continue
        yield _checked(lines.number, fields[id_column or 0], fields[label_column or 0], raw)


def _checked(row: int, inference_id: str, label: str, raw: str) -> ParsedRow:
    inference_id = inference_id.strip()
    label = label.strip()
    if not inference_id:
        return RejectedRow(row, "missing inference id", raw)
    if not label:
        return RejectedRow(row, "missing label", raw)
    if _NOT_UTF8 in inference_id or _NOT_UTF8 in label:
        return RejectedRow(row, "not valid UTF-8", raw)
    if len(inference_id) * 4 > MAX_ID_BYTES and len(inference_id.encode("utf-8")) > MAX_ID_BYTES:
        return RejectedRow(row, f"inference id longer than {MAX_ID_BYTES} bytes", raw[:200])
    return LabelRow(row, inference_id, label)


def _parse_json_lines(lines: _LineTracker) -> Iterator[ParsedRow]:
    for line in lines:
        raw = lines.take_record_text()
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            yield RejectedRow(lines.number, f"not valid JSON ({exc.args[0] if exc.args else exc})", raw)
            continue
        if not isinstance(document, dict):
            yield RejectedRow(lines.number, f"a JSON {type(document).__name__}, expected an object", raw)
            continue
        yield _json_row(lines.number, document, raw)


def _json_row(row: int, document: dict[str, Any], raw: str) -> ParsedRow:
    ground_truth = document.get("groundTruthData")
    if isinstance(ground_truth, dict):
        metadata = document.get("eventMetadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        id_value = metadata.get("inferenceId") or metadata.get("eventId")
        label_value = ground_truth.get("data")
    else:
        id_value = _field(document, _ID_ALIASES, ID_FIELDS)
        label_value = _field(document, _LABEL_ALIASES, LABEL_FIELDS)

    inference_id, id_problem = _json_text(id_value, "inference id")
    if id_problem:
        return RejectedRow(row, id_problem, raw)
    label, label_problem = _json_text(label_value, "label")
    if label_problem:
        return RejectedRow(row, label_problem, raw)
    return _checked(row, inference_id, label, raw)


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
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "", f"{what} is not a finite number"
        return repr(value), None
    if isinstance(value, str):
        return value, None
    return "", f"{what} is a JSON {type(value).__name__}, expected a string or number"


class LabelResolver:
    """Turns label text into a class index of one model card.

    A label names class ``i`` when, in this order: its trimmed text is ``class_names[i]``; or it is
    a number with an integral value ``n`` (``1``, ``1.0``, ``" 1 "``) and ``str(n)`` is
    ``class_names[i]``; or that ``n`` is a valid index ``0 <= n < len(class_names)``. Anything else
    is unknown. Answers are cached, since a file repeats the same few labels.
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
        text = label.strip()
        if text in self._by_name:
            return self._by_name[text]
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number) or not number.is_integer():
            return None
        integral = int(number)
        if str(integral) in self._by_name:
            return self._by_name[str(integral)]
        if 0 <= integral < len(self._class_names):
            return integral
        return None


def rejected_jsonl(rows: Iterable[RejectedRow]) -> bytes:
    """The ``rejected/`` object: one JSON object per line, in row order."""
    ordered = sorted(rows, key=lambda r: r.row)
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in ordered).encode("utf-8")
