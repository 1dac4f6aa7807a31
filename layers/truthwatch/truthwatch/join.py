"""Join label rows to recorded predictions, and account for every row on the way.

Every data row of a label file ends in exactly one bucket:

``rejected``
    malformed, a field missing, a label that names no class of the model, or a prediction record
    that cannot be used (its reason says which);
``duplicate``
    an earlier row with a valid label for an inference id that has a later one in the same file
    (the later valid row wins; a row whose label names no class is rejected and displaces nothing);
``unknown``
    no prediction is recorded under the inference id (never made, or expired by the table's TTL);
``matched``
    joined to its prediction, and counted in the quality metrics of that prediction's model version.

So ``read == matched + unknown + rejected + duplicate``, always. Labels are checked against the
model card of the prediction they join, which is why a row with an unknown id is counted as unknown
even when its label would not have been valid.

Everything here works on columns, not on an object per row: the label file becomes lists of ids,
row numbers and label codes (:class:`LabelSet`), a :class:`PredictionStore` answers a batch of ids
with numpy arrays (:class:`PredictionColumns`), and the joined rows of each model version are
concatenated arrays (:class:`MatchedRows`). A million rows are then a few hundred array operations
instead of a few million Python objects.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from boto3.dynamodb.types import TypeDeserializer

from truthwatch.baseline import bin_indices
from truthwatch.card import ModelCard
from truthwatch.errors import TruthwatchError
from truthwatch.labels import (
    LabelBatch,
    LabelResolver,
    LabelRow,
    LineSpool,
    ParsedRow,
    Readable,
    RejectedRows,
    RowTexts,
    parse_label_batches,
)
from truthwatch.records import (
    CAPTURE_MODES,
    CaptureMode,
    PredictionRecord,
    StoredPrediction,
    UnreadableRecordError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

BATCH_GET_KEYS = 100
"""BatchGetItem's limit of keys per call (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)."""

EXAMPLES_KEPT = 20
"""Row numbers (or ids) kept as examples per bucket in the report."""

DUPLICATE_POLICY = (
    "only valid labels compete: the last row of an inference id with a valid label wins and the earlier "
    "ones count as duplicate; a row whose label names no class is rejected and displaces nothing"
)


class StoreUnavailableError(TruthwatchError):
    """Predictions could not be read (keys still unprocessed after every retry)."""


@dataclass
class LabelSet:
    """The rows of one label file after parsing and de-duplication, as columns.

    Attributes
    ----------
    ids
        Every inference id once, in the order of its first row.
    rows, label_codes
        For ``ids[i]``: the line number and the label code of its last row, shape ``(len(ids),)``;
        ``label_texts[code]`` is the label as written (trimmed).
    earlier_rows, earlier_ids, earlier_codes
        The rows a later row of the same id overrode, in row order: line number, index into
        ``ids`` and label code. Which of an id's rows wins is settled by the join, once the labels
        are checked against the card: only valid labels compete.
    rejected
        Rows refused by the parser, waiting in a temporary file (see :class:`RejectedRows`); the join
        adds its own and hands the same object on in :class:`JoinResult`.
    read
        Data rows read (blank lines and the CSV header are not rows), counted by the parser from
        the lines, apart from the buckets the rows end in.
    duplicate_rows
        How many earlier rows a later row overrode, before the labels are checked (the join's
        ``duplicate`` counts only valid labels); ``duplicate_examples`` holds the first of them.
    file_error
        Why reading stopped early, when the file is damaged (its unreadable rest is one of the
        ``rejected`` rows).
    """

    ids: list[str] = field(default_factory=list)
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    label_codes: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    label_texts: list[str] = field(default_factory=list)
    earlier_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    earlier_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    earlier_codes: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    rejected: RejectedRows = field(default_factory=RejectedRows)
    read: int = 0
    duplicate_rows: int = 0
    duplicate_examples: list[int] = field(default_factory=list)
    file_error: str | None = None


def read_labels(body: Readable) -> LabelSet:
    """Parse a label object (see :mod:`truthwatch.labels`) and keep the last label of each inference id.

    Raises
    ------
    LabelStreamError
        When reading the object fails part-way; nothing read is kept, the invocation is retried.
    """
    lines = LineSpool()  # the line of every row, for the rows the join refuses
    try:
        return _collect(parse_label_batches(body, lines=lines), RejectedRows(lines=lines))
    except BaseException:
        lines.close()
        raise


def collect_labels(rows: Iterable[ParsedRow]) -> LabelSet:
    """Count parsed rows and keep the last label of each inference id (rows as objects).

    With no file behind them, a row the join refuses is written with ``<id>,<label>`` as its text.
    """
    texts = RowTexts()

    def batches() -> Iterator[LabelBatch]:
        batch = LabelBatch()
        for parsed in rows:
            batch.add(parsed)
            batch.read += 1
            if isinstance(parsed, LabelRow):
                texts[parsed.row] = f"{parsed.inference_id},{parsed.label}"
        yield batch

    return _collect(batches(), RejectedRows(lines=texts))


def _collect(batches: Iterable[LabelBatch], rejected: RejectedRows) -> LabelSet:
    labels = LabelSet(rejected=rejected)
    rows: list[int] = []
    ids: list[str] = []
    texts: list[str] = []
    for batch in batches:
        rows += batch.rows
        ids += batch.ids
        texts += batch.labels
        labels.rejected.extend(batch.rejected)
        labels.read += batch.read
        labels.file_error = batch.damage or labels.file_error

    # A dict built from pairs keeps the last value of a repeated key in the place of its first:
    # the later row wins, in C, without a Python step per row.
    latest = dict(zip(ids, range(len(ids)), strict=True))
    winners = np.fromiter(latest.values(), dtype=np.int64, count=len(latest))
    all_rows = np.asarray(rows, dtype=np.int64)
    labels.ids = list(latest)
    labels.rows = all_rows[winners]
    labels.duplicate_rows = len(ids) - len(latest)

    code_of = {text: code for code, text in enumerate(dict.fromkeys(texts))}
    codes = np.fromiter(map(code_of.__getitem__, texts), dtype=np.int32, count=len(texts))
    labels.label_texts = list(code_of)
    labels.rejected.ids = labels.ids
    labels.label_codes = codes[winners]
    if labels.duplicate_rows:
        overridden = np.ones(len(ids), dtype=bool)
        overridden[winners] = False
        earlier = np.flatnonzero(overridden)
        id_at = np.empty(len(ids), dtype=np.int64)
        id_at[winners] = np.arange(len(winners))
        labels.earlier_rows = all_rows[earlier]
        labels.earlier_ids = id_at[[latest[ids[p]] for p in earlier.tolist()]]
        labels.earlier_codes = codes[earlier]
        labels.duplicate_examples = labels.earlier_rows[:EXAMPLES_KEPT].tolist()
    return labels


@dataclass(frozen=True)
class PredictionColumns:
    """Recorded predictions of one model version found for a batch of ids, one array per attribute.

    Attributes
    ----------
    model_name, model_version
        The version every row was predicted by.
    positions
        Where each row's inference id is in the sequence asked for, shape ``(n,)``.
    label_index
        Predicted class index, shape ``(n,)``.
    confidence
        Recorded probability of the predicted class, shape ``(n,)``.
    probabilities
        Recorded class probabilities, shape ``(n, k)`` (``k`` as recorded, checked against the card
        by the join).
    predicted_at
        Prediction times as epoch seconds, shape ``(n,)``.
    inputs_mode
        How the inputs of every row were captured.
    inputs
        The captured bytes, shape ``(n, bytes per row)``; None for ``none``.
    """

    model_name: str
    model_version: str
    positions: npt.NDArray[np.int64]
    label_index: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float32]
    probabilities: npt.NDArray[np.float32]
    predicted_at: npt.NDArray[np.float64]
    inputs_mode: CaptureMode = "none"
    inputs: npt.NDArray[np.uint8] | None = None

    def __len__(self) -> int:
        return len(self.positions)


def columns_from_records(
    records: Sequence[PredictionRecord | StoredPrediction], positions: Sequence[int]
) -> list[PredictionColumns]:
    """Group records into :class:`PredictionColumns`: one per version, probability count and input layout.

    ``positions[i]`` is where ``records[i]``'s id is in the sequence asked for.
    """
    groups: dict[tuple[str, str, int, CaptureMode, int], list[int]] = {}
    for i, record in enumerate(records):
        size = len(record.inputs) if record.inputs is not None and record.inputs_mode != "none" else 0
        key = (record.model_name, record.model_version, len(record.probabilities), record.inputs_mode, size)
        groups.setdefault(key, []).append(i)

    columns = []
    for (name, version, k, mode, size), members in groups.items():
        chosen = [records[i] for i in members]
        inputs = None
        if size:
            inputs = np.frombuffer(b"".join(r.inputs or b"" for r in chosen), dtype=np.uint8).reshape(
                -1, size
            )
        columns.append(
            PredictionColumns(
                model_name=name,
                model_version=version,
                positions=np.asarray([positions[i] for i in members], dtype=np.int64),
                label_index=np.asarray([r.label_index for r in chosen], dtype=np.int64),
                confidence=np.asarray([r.confidence for r in chosen], dtype=np.float32),
                probabilities=np.asarray([r.probabilities for r in chosen], dtype=np.float32).reshape(-1, k),
                predicted_at=np.asarray([r.predicted_at.timestamp() for r in chosen], dtype=np.float64),
                inputs_mode=mode if size else "none",
                inputs=inputs,
            )
        )
    return columns


def columns_from_items(
    items: Sequence[Mapping[str, Any]], positions: Sequence[int]
) -> list[PredictionColumns]:
    """Columns straight from BatchGetItem's typed items, in the layout of :mod:`truthwatch.records`.

    The same result as :meth:`PredictionRecord.from_item` then :func:`columns_from_records`, without
    a ``Decimal`` and a record per item: the numbers are parsed by numpy, a group at a time.

    Raises
    ------
    KeyError, ValueError, TypeError
        When an item does not have the exact layout records are written in (the caller falls back
        to the record reader).
    """
    groups: dict[tuple[str, str, int, str, int], list[int]] = {}
    for i, item in enumerate(items):
        mode = item["inputs_mode"]["S"] if "inputs_mode" in item else "none"
        size = len(item["inputs"]["B"]) if mode != "none" and "inputs" in item else 0
        key = (
            item["model_name"]["S"],
            item["model_version"]["S"],
            len(item["probabilities"]["L"]),
            mode,
            size,
        )
        groups.setdefault(key, []).append(i)

    columns = []
    for (name, version, k, mode, size), members in groups.items():
        if mode not in CAPTURE_MODES:
            raise ValueError(f"inputs_mode {mode!r}")
        chosen = [items[i] for i in members]
        times = [item["predicted_at"]["S"] for item in chosen]
        if not all(t.endswith("Z") for t in times):
            raise ValueError("predicted_at without a Z offset")
        moments = [datetime.fromisoformat(t[:-1]).replace(tzinfo=UTC).timestamp() for t in times]
        inputs = None
        if size:
            joined = b"".join(item["inputs"]["B"] for item in chosen)
            inputs = np.frombuffer(joined, dtype=np.uint8).reshape(-1, size)
        columns.append(
            PredictionColumns(
                model_name=name,
                model_version=version,
                positions=np.asarray([positions[i] for i in members], dtype=np.int64),
                label_index=_numbers([item["label_index"]["N"] for item in chosen], np.int64, int),
                confidence=_numbers([item["confidence"]["N"] for item in chosen], np.float32),
                probabilities=_numbers(
                    [p["N"] for item in chosen for p in item["probabilities"]["L"]], np.float32
                ).reshape(-1, k),
                predicted_at=np.asarray(moments, dtype=np.float64),
                inputs_mode=mode if size else "none",
                inputs=inputs,
            )
        )
    return columns


def _numbers(texts: list[str], dtype: Any, parse: Callable[[str], Any] = float) -> npt.NDArray[Any]:
    # Python's float() and int() parse DynamoDB's number strings several times faster than numpy's
    # string-to-number casts.
    return np.fromiter(map(parse, texts), dtype=dtype, count=len(texts))


@dataclass(frozen=True)
class UnreadableRecords:
    """Items found for some ids that cannot be read as predictions: ``reasons[i]`` for ``positions[i]``."""

    positions: npt.NDArray[np.int64]
    reasons: list[str]


class PredictionStore(Protocol):
    """Where recorded predictions are looked up by inference id."""

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[PredictionColumns | UnreadableRecords]:
        """Yield the predictions found for ``inference_ids`` as columns; ids not found are left out.

        An item found but unreadable is yielded in :class:`UnreadableRecords`, with the reason.
        """
        ...


@dataclass(frozen=True)
class MatchedRows:
    """The joined rows of one model version, as arrays.

    Attributes
    ----------
    card
        The model card of the version; class indices refer to its ``class_names``.
    y_true, y_pred
        Class indices, shape ``(n,)``.
    probabilities
        Recorded class probabilities, shape ``(n, n_classes)``.
    confidence
        Recorded probability of the predicted class, shape ``(n,)``.
    predicted_at
        Prediction times as epoch seconds, shape ``(n,)``.
    bins
        Bin index per feature of the rows with captured inputs, shape ``(m, n_features)``,
        ``m <= n``; ``bins_hour`` gives each of those rows' epoch hour.
    rows_without_inputs
        Rows recorded with ``inputs_mode`` ``none`` (or inputs of the wrong size): no feature drift.
    """

    card: ModelCard
    y_true: npt.NDArray[np.int64]
    y_pred: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    predicted_at: npt.NDArray[np.float64]
    bins: npt.NDArray[np.uint8]
    bins_hour: npt.NDArray[np.int64]
    rows_without_inputs: int

    @property
    def rows(self) -> int:
        """Number of matched rows."""
        return len(self.y_true)

    @property
    def hours(self) -> npt.NDArray[np.int64]:
        """The epoch hour (hours since 1970-01-01T00:00Z) each row was predicted in, shape ``(n,)``."""
        return np.floor_divide(self.predicted_at, 3600).astype(np.int64)


@dataclass(frozen=True)
class _Chunk:
    """The fitting rows of one batch of predictions of a version, inputs already binned."""

    positions: npt.NDArray[np.int64]
    y_pred: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    predicted_at: npt.NDArray[np.float64]
    bins: npt.NDArray[np.uint8] | None

    def take(self, mask: npt.NDArray[np.bool_]) -> _Chunk:
        """The rows where ``mask`` is true."""
        return _Chunk(
            self.positions[mask],
            self.y_pred[mask],
            self.probabilities[mask],
            self.confidence[mask],
            self.predicted_at[mask],
            None if self.bins is None else self.bins[mask],
        )


class _VersionBuilder:
    """Collects one model version's joined rows, batch by batch, into arrays."""

    def __init__(self, card: ModelCard, labels: LabelSet) -> None:
        self.card = card
        resolver = LabelResolver(card.class_names)
        self.resolver = resolver
        # One lookup per distinct label text, then a table lookup per row.
        self.true_index = np.asarray(
            [-1 if (i := resolver.index(text)) is None else i for text in labels.label_texts], dtype=np.int64
        )
        self.chunks: list[_Chunk] = []

    def add(self, columns: PredictionColumns) -> list[tuple[int, str]]:
        """Keep the rows whose record fits the card; return ``(position, reason)`` of the others."""
        n_classes = len(self.card.class_names)
        fits = (
            (columns.probabilities.shape[1] == n_classes)
            & (columns.label_index >= 0)
            & (columns.label_index < n_classes)
        )
        misfits = [
            (
                int(columns.positions[i]),
                f"prediction record holds {columns.probabilities.shape[1]} probabilities and class "
                f"index {columns.label_index[i]}, the model card {n_classes} classes",
            )
            for i in np.flatnonzero(~fits).tolist()
        ]
        if misfits:
            columns = _take(columns, fits)
        chunk = _Chunk(
            columns.positions,
            columns.label_index,
            columns.probabilities,
            columns.confidence,
            columns.predicted_at,
            self._bins(columns),
        )
        self.chunks.append(chunk)
        return misfits

    def _bins(self, columns: PredictionColumns) -> npt.NDArray[np.uint8] | None:
        n_features = self.card.n_features
        inputs = columns.inputs
        if inputs is None:
            return None
        if columns.inputs_mode == "binned" and inputs.shape[1] == n_features:
            return inputs
        if columns.inputs_mode == "raw" and inputs.shape[1] == 4 * n_features:
            # Raw captures are binned here, column by column, with the same edges capture uses.
            raw = inputs.view("<f4")
            binned = np.empty(raw.shape, dtype=np.uint8)
            for column, feature in enumerate(self.card.baseline.features):
                binned[:, column] = bin_indices(raw[:, column], np.asarray(feature.bin_edges))
            return binned
        logger.debug("inputs of %d records do not fit the card's %d features", len(columns), n_features)
        return None

    def positions(self) -> npt.NDArray[np.int64]:
        """Where in the label set's ids the rows of this version are."""
        if not self.chunks:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([c.positions for c in self.chunks])

    def build(self, y_true_of: npt.NDArray[np.int64]) -> MatchedRows:
        """Concatenate the batches, keeping the ids whose labels gave a class (``y_true_of[id] >= 0``)."""
        n_classes = len(self.card.class_names)
        parts: dict[str, list[npt.NDArray[Any]]] = {
            k: []
            for k in ("y_true", "y_pred", "probabilities", "confidence", "predicted_at", "bins", "bins_hour")
        }
        without_inputs = 0
        for chunk in self.chunks:
            y_true = y_true_of[chunk.positions]
            keep = y_true >= 0
            if not keep.all():  # some ids had no valid label; most chunks keep every row, uncopied
                chunk = chunk.take(keep)
                y_true = y_true[keep]
            parts["y_true"].append(y_true)
            parts["y_pred"].append(chunk.y_pred)
            parts["probabilities"].append(chunk.probabilities)
            parts["confidence"].append(chunk.confidence)
            parts["predicted_at"].append(chunk.predicted_at)
            if chunk.bins is None:
                without_inputs += len(y_true)
            else:
                parts["bins"].append(chunk.bins)
                parts["bins_hour"].append(np.floor_divide(chunk.predicted_at, 3600).astype(np.int64))

        def joined(name: str, dtype: Any, width: int | None = None) -> npt.NDArray[Any]:
            if parts[name]:
                return np.concatenate(parts[name]).astype(dtype, copy=False)
            return np.zeros((0,) if width is None else (0, width), dtype=dtype)

        return MatchedRows(
            card=self.card,
            y_true=joined("y_true", np.int64),
            y_pred=joined("y_pred", np.int64),
            probabilities=joined("probabilities", np.float32, n_classes),
            confidence=joined("confidence", np.float32),
            predicted_at=joined("predicted_at", np.float64),
            bins=joined("bins", np.uint8, self.card.n_features),
            bins_hour=joined("bins_hour", np.int64),
            rows_without_inputs=without_inputs,
        )


def _take(columns: PredictionColumns, mask: npt.NDArray[np.bool_]) -> PredictionColumns:
    return PredictionColumns(
        model_name=columns.model_name,
        model_version=columns.model_version,
        positions=columns.positions[mask],
        label_index=columns.label_index[mask],
        confidence=columns.confidence[mask],
        probabilities=columns.probabilities[mask],
        predicted_at=columns.predicted_at[mask],
        inputs_mode=columns.inputs_mode,
        inputs=None if columns.inputs is None else columns.inputs[mask],
    )


@dataclass
class JoinResult:
    """What became of every row of one label file."""

    read: int
    unknown: int
    duplicate: int
    rejected: RejectedRows
    versions: dict[tuple[str, str], MatchedRows]
    unknown_examples: list[str]
    duplicate_examples: list[int]
    file_error: str | None = None

    @property
    def matched(self) -> int:
        """Rows joined to a usable prediction, over every version."""
        return sum(m.rows for m in self.versions.values())

    def accounting(self) -> dict[str, Any]:
        """The row counts, the reasons of rejected rows by kind, and a few examples."""
        return {
            "read": self.read,
            "matched": self.matched,
            "unknown": self.unknown,
            "rejected": len(self.rejected),
            "duplicate": self.duplicate,
            "balanced": self.read == self.matched + self.unknown + len(self.rejected) + self.duplicate,
            "rejected_reasons": self.rejected.kinds(),
            "unknown_examples": self.unknown_examples,
            "duplicate_rows_overridden": self.duplicate_examples,
            "duplicate_policy": DUPLICATE_POLICY,
            "file_error": self.file_error,
        }


CardLookup = Callable[[str, str], "ModelCard | None"]


def join_labels(labels: LabelSet, store: PredictionStore, card_for: CardLookup) -> JoinResult:
    """Join the label rows to their recorded predictions, grouped by model version.

    Parameters
    ----------
    labels
        The parsed rows of one file (from :func:`read_labels`).
    store
        Where predictions are read; ids it does not return are unknown.
    card_for
        The model card of ``(model name, version)``, or None when there is none; rows joined to a
        version without a card are rejected, since their labels cannot be checked.

    Notes
    -----
    Only valid labels compete for an id: among the rows of an id joined to a usable prediction, a
    row whose label names no class of the card is rejected, the last row with a valid label wins
    and the earlier valid ones are duplicates. The rows of an id whose labels cannot be checked (no
    prediction recorded, or one that cannot be used) count by position: the last row is unknown or
    rejected with the prediction's reason, the earlier ones are duplicates.
    """
    rejected = labels.rejected
    found = np.zeros(len(labels.ids), dtype=bool)
    builders: dict[tuple[str, str], _VersionBuilder | None] = {}

    for answer in store.get_many(labels.ids):
        # A store answering an id twice must not count its row twice.
        fresh = ~found[answer.positions]
        if isinstance(answer, UnreadableRecords):
            positions = answer.positions[fresh]
            found[positions] = True
            kept = [reason for reason, keep in zip(answer.reasons, fresh.tolist(), strict=True) if keep]
            reasons = np.asarray([rejected.reason_id(r) for r in kept], dtype=np.int32)
            rejected.reject(labels.rows[positions], positions, reasons)
            continue
        columns = answer if fresh.all() else _take(answer, fresh)
        found[columns.positions] = True
        version = (columns.model_name, columns.model_version)
        if version not in builders:
            card = card_for(*version)
            builders[version] = _VersionBuilder(card, labels) if card is not None else None
        builder = builders[version]
        if builder is None:
            positions = columns.positions
            reason: npt.NDArray[np.int32] | str = f"no model card for {version[0]}/{version[1]}"
        else:
            misfits = builder.add(columns)
            positions = np.asarray([p for p, _ in misfits], dtype=np.int64)
            reason = np.asarray([rejected.reason_id(r) for _, r in misfits], dtype=np.int32)
        rejected.reject(labels.rows[positions], positions, reason)

    active = {v: b for v, b in builders.items() if b is not None}
    settled = _settle(labels, list(active.values()), rejected)
    versions = {v: matched for v, b in active.items() if (matched := b.build(settled.y_true)).rows}
    unknown = np.flatnonzero(~found)
    return JoinResult(
        read=labels.read,
        unknown=len(unknown),
        duplicate=settled.duplicate,
        rejected=rejected,
        versions=versions,
        unknown_examples=[labels.ids[i] for i in unknown[:EXAMPLES_KEPT].tolist()],
        duplicate_examples=settled.duplicate_examples,
        file_error=labels.file_error,
    )


@dataclass(frozen=True)
class _Settled:
    """Which row of every id counts, once labels are checked: its class, and the duplicates."""

    y_true: npt.NDArray[np.int64]
    duplicate: int
    duplicate_examples: list[int]


def _settle(labels: LabelSet, builders: list[_VersionBuilder], rejected: RejectedRows) -> _Settled:
    """Check every row's label against the card of its id's version; only valid labels compete.

    ``y_true[id]`` is the class of the winning row, or -1 when the id has no valid label or cannot
    be judged. Rows with an invalid label are appended to ``rejected``.
    """
    n_ids = len(labels.ids)
    # The class each row's label names: -1 none, -2 not judged (no usable prediction for the id).
    last_class = np.full(n_ids, -2, dtype=np.int64)
    earlier_class = np.full(len(labels.earlier_rows), -2, dtype=np.int64)
    owner = np.full(n_ids, -1, dtype=np.int64)
    for index, builder in enumerate(builders):
        mine = builder.positions()
        owner[mine] = index
        last_class[mine] = builder.true_index[labels.label_codes[mine]]
    earlier_owner = owner[labels.earlier_ids]
    for index, builder in enumerate(builders):
        mine = earlier_owner == index
        earlier_class[mine] = builder.true_index[labels.earlier_codes[mine]]

    # An id whose last label is invalid takes its latest valid earlier row, if it has one.
    y_true = np.where(last_class >= 0, last_class, -1)
    fallback = np.flatnonzero((earlier_class >= 0) & (last_class[labels.earlier_ids] == -1))
    latest = np.full(n_ids, -1, dtype=np.int64)
    np.maximum.at(latest, labels.earlier_ids[fallback], fallback)
    takes = np.flatnonzero(latest >= 0)
    y_true[takes] = earlier_class[latest[takes]]
    won = np.zeros(len(labels.earlier_rows), dtype=bool)
    won[latest[takes]] = True

    for index, builder in enumerate(builders):
        for rows, codes, id_at, classes, owners in (
            (labels.rows, labels.label_codes, np.arange(n_ids), last_class, owner),
            (labels.earlier_rows, labels.earlier_codes, labels.earlier_ids, earlier_class, earlier_owner),
        ):
            refused = np.flatnonzero((classes == -1) & (owners == index))
            texts, inverse = np.unique(codes[refused], return_inverse=True)
            reason_ids = [rejected.reason_id(builder.resolver.reason(labels.label_texts[t])) for t in texts]
            reasons = np.asarray(reason_ids, dtype=np.int32)[inverse]
            rejected.reject(rows[refused], id_at[refused], reasons)

    duplicate = (earlier_class == -2) | ((earlier_class >= 0) & ~won)
    return _Settled(
        y_true=y_true,
        duplicate=int(duplicate.sum()),
        duplicate_examples=labels.earlier_rows[duplicate][:EXAMPLES_KEPT].tolist(),
    )


class InMemoryPredictionStore:
    """A dictionary of records standing in for the table (tests, local runs)."""

    def __init__(self, records: Mapping[str, PredictionRecord], batch_size: int = 1000) -> None:
        self._records = records
        self._batch_size = batch_size

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[PredictionColumns]:
        """Yield the known records as columns, ``batch_size`` ids at a time."""
        for start in range(0, len(inference_ids), self._batch_size):
            chunk = inference_ids[start : start + self._batch_size]
            hits = [(start + i, self._records[x]) for i, x in enumerate(chunk) if x in self._records]
            yield from columns_from_records([r for _, r in hits], [p for p, _ in hits])


class DynamoDBPredictionStore:
    """Reads ``PredictionsTable`` with BatchGetItem, 100 keys a call, several calls in parallel.

    Keys that DynamoDB returns as unprocessed (throttling, the 16 MB response limit) are asked for
    again with exponential backoff and jitter, up to ``max_attempts`` calls per batch; after that
    :class:`StoreUnavailableError` fails the invocation rather than counting them as unknown. Items
    are read straight into columns; a batch holding an item in another layout is read item by item
    with :meth:`StoredPrediction.from_item`, and an item that cannot be read is handed on in
    :class:`UnreadableRecords`.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        workers: int = 8,
        max_attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
    ) -> None:
        self._client = client
        self._table = table_name
        self._workers = workers
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._deserializer = TypeDeserializer()

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[PredictionColumns | UnreadableRecords]:
        """Yield the records found as columns, one group per BatchGetItem batch and version."""
        starts = range(0, len(inference_ids), BATCH_GET_KEYS)
        chunks = [(start, inference_ids[start : start + BATCH_GET_KEYS]) for start in starts]
        if len(chunks) <= 1:
            for columns in map(self._get_columns, chunks):
                yield from columns
            return
        # boto3 clients are thread-safe; the calls wait on the network, so threads overlap them.
        with ThreadPoolExecutor(max_workers=min(self._workers, len(chunks))) as pool:
            for columns in pool.map(self._get_columns, chunks):
                yield from columns

    def _get_columns(self, chunk: tuple[int, Sequence[str]]) -> list[PredictionColumns | UnreadableRecords]:
        start, inference_ids = chunk
        items = self._get_batch(inference_ids)
        where = {inference_id: start + i for i, inference_id in enumerate(inference_ids)}
        positions = [where[item["inference_id"]["S"]] for item in items]
        try:
            return list(columns_from_items(items, positions))
        except (KeyError, ValueError, TypeError):
            pass
        # Not the plain layout records.py writes: each item is read on its own by the record reader,
        # which accepts what it can and names the field it cannot, so a bad item costs its row only.
        stored: list[StoredPrediction] = []
        kept: list[int] = []
        unreadable: list[int] = []
        reasons: list[str] = []
        for item, position in zip(items, positions, strict=True):
            try:
                stored.append(StoredPrediction.from_item(self._deserialized(item)))
                kept.append(position)
            except UnreadableRecordError as exc:
                unreadable.append(position)
                reasons.append(f"recorded prediction unreadable: {exc.field}")
        answers: list[PredictionColumns | UnreadableRecords] = list(columns_from_records(stored, kept))
        if unreadable:
            logger.warning("unreadable prediction records", extra={"count": len(unreadable)})
            answers.append(UnreadableRecords(np.asarray(unreadable, dtype=np.int64), reasons))
        return answers

    def _deserialized(self, item: Mapping[str, Any]) -> dict[str, Any]:
        values = {}
        for name, value in item.items():
            try:
                values[name] = self._deserializer.deserialize(value)
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise UnreadableRecordError(name, str(exc)[:100]) from exc
        return values

    def _get_batch(self, inference_ids: Sequence[str]) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = [{"inference_id": {"S": i}} for i in inference_ids]
        found: list[dict[str, Any]] = []
        for attempt in range(self._max_attempts):
            if attempt:
                ceiling = min(self._max_delay, self._base_delay * 2**attempt)
                time.sleep(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security
            response = self._client.batch_get_item(RequestItems={self._table: {"Keys": keys}})
            found.extend(response.get("Responses", {}).get(self._table, []))
            unprocessed = response.get("UnprocessedKeys") or {}
            keys = list(unprocessed[self._table]["Keys"]) if self._table in unprocessed else []
            if not keys:
                return found
            logger.debug("batch_get_item left %d keys unprocessed (attempt %d)", len(keys), attempt + 1)
        raise StoreUnavailableError(
            f"{len(keys)} keys of {self._table} still unprocessed after {self._max_attempts} calls"
        )
