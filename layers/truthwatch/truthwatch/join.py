"""Join label rows to recorded predictions, and account for every row on the way.

Every data row of a label file ends in exactly one bucket:

``rejected``
    malformed, a field missing, a label that names no class of the model, or a prediction record
    that cannot be used (its reason says which);
``duplicate``
    an earlier row for an inference id that appears again later in the same file (the later row
    wins);
``unknown``
    no prediction is recorded under the inference id (never made, or expired by the table's TTL);
``matched``
    joined to its prediction, and counted in the quality metrics of that prediction's model version.

So ``read == matched + unknown + rejected + duplicate``, always. Labels are checked against the
model card of the prediction they join, which is why a row with an unknown id is counted as unknown
even when its label would not have been valid.

The join pulls predictions in batches from a :class:`PredictionStore` and copies what the metrics
need into flat arrays per model version at once, so memory holds numbers, not a million records.
"""

from __future__ import annotations

import logging
import random
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from boto3.dynamodb.types import TypeDeserializer

from truthwatch.baseline import bin_indices
from truthwatch.card import ModelCard
from truthwatch.errors import TruthwatchError
from truthwatch.labels import LabelFileError, LabelResolver, LabelRow, ParsedRow, RejectedRow
from truthwatch.records import PredictionRecord, decode_raw

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

BATCH_GET_KEYS = 100
"""BatchGetItem's limit of keys per call (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)."""

EXAMPLES_KEPT = 20
"""Row numbers (or ids) kept as examples per bucket in the report."""


DUPLICATE_POLICY = "the last row for an inference id in the file wins; earlier rows count as duplicate"


class StoreUnavailableError(TruthwatchError):
    """Predictions could not be read (keys still unprocessed after every retry)."""


class PredictionStore(Protocol):
    """Where recorded predictions are looked up by inference id."""

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[list[PredictionRecord]]:
        """Yield the records found for ``inference_ids`` in batches; ids not found are left out."""
        ...


@dataclass
class LabelSet:
    """The rows of one label file after parsing and de-duplication.

    Attributes
    ----------
    latest
        Inference id to ``(row, label text)`` of the last row naming it.
    rejected
        Rows refused by the parser.
    read
        Data rows read (blank lines and the CSV header are not rows).
    duplicate_rows
        How many earlier rows a later row overrode; ``duplicate_examples`` holds the first rows.
    file_error
        Why reading stopped early, when it did.
    """

    latest: dict[str, tuple[int, str]] = field(default_factory=dict)
    rejected: list[RejectedRow] = field(default_factory=list)
    read: int = 0
    duplicate_rows: int = 0
    duplicate_examples: list[int] = field(default_factory=list)
    file_error: str | None = None


def collect_labels(rows: Iterable[ParsedRow]) -> LabelSet:
    """Count the parsed rows and keep the last label of each inference id."""
    labels = LabelSet()
    latest = labels.latest
    try:
        for parsed in rows:
            labels.read += 1
            if isinstance(parsed, LabelRow):
                previous = latest.get(parsed.inference_id)
                if previous is not None:
                    labels.duplicate_rows += 1
                    if len(labels.duplicate_examples) < EXAMPLES_KEPT:
                        labels.duplicate_examples.append(previous[0])
                latest[parsed.inference_id] = (parsed.row, parsed.label)
            else:
                labels.rejected.append(parsed)
    except LabelFileError as exc:
        labels.file_error = str(exc)
    return labels


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

    def by_hour(self) -> Iterator[tuple[int, MatchedRows]]:
        """Split the rows by the UTC hour they were predicted in: ``(epoch hour, rows)``, oldest first."""
        hours = np.floor(self.predicted_at / 3600).astype(np.int64)
        unique = np.unique(hours)
        if len(unique) == 1:
            yield int(unique[0]), self
            return
        for hour in unique:
            yield int(hour), self._hour(hours == hour, int(hour))

    def _hour(self, mask: npt.NDArray[np.bool_], hour: int) -> MatchedRows:
        with_inputs = self.bins_hour == hour
        return MatchedRows(
            card=self.card,
            y_true=self.y_true[mask],
            y_pred=self.y_pred[mask],
            probabilities=self.probabilities[mask],
            confidence=self.confidence[mask],
            predicted_at=self.predicted_at[mask],
            bins=self.bins[with_inputs],
            bins_hour=self.bins_hour[with_inputs],
            rows_without_inputs=int(mask.sum()) - int(with_inputs.sum()),
        )


class _VersionBuilder:
    """Collects one model version's joined rows into compact arrays."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.resolver = LabelResolver(card.class_names)
        self.y_true = array("q")
        self.y_pred = array("q")
        self.probabilities = array("f")
        self.confidence = array("f")
        self.predicted_at = array("d")
        self.bins = bytearray()
        self.bins_hour = array("q")
        self.raw = array("f")
        self.raw_hour = array("q")
        self.rows_without_inputs = 0

    def add_batch(
        self, entries: list[tuple[PredictionRecord, int, str]], rejected: list[RejectedRow]
    ) -> None:
        """Append the rows of one lookup batch; rows that cannot be used go to ``rejected``."""
        index = self.resolver.index
        n_classes = len(self.card.class_names)
        good: list[tuple[PredictionRecord, int]] = []
        for record, row, label in entries:
            true_index = index(label)
            if true_index is None:
                rejected.append(RejectedRow(row, self.resolver.reason(label), label))
            elif len(record.probabilities) != n_classes or not 0 <= record.label_index < n_classes:
                reason = (
                    f"prediction record holds {len(record.probabilities)} probabilities and class index "
                    f"{record.label_index}, the model card {n_classes} classes"
                )
                rejected.append(RejectedRow(row, reason, label))
            else:
                good.append((record, true_index))

        # Column by column over the batch: far fewer Python steps per row than one row at a time.
        self.y_true.extend([i for _, i in good])
        self.y_pred.extend([r.label_index for r, _ in good])
        self.probabilities.extend([p for r, _ in good for p in r.probabilities])
        self.confidence.extend([r.confidence for r, _ in good])
        times = [r.predicted_at.timestamp() for r, _ in good]
        self.predicted_at.extend(times)
        n_features = self.card.n_features
        for (record, _), moment in zip(good, times, strict=True):
            inputs = record.inputs
            if inputs is not None and record.inputs_mode == "binned" and len(inputs) == n_features:
                self.bins += inputs
                self.bins_hour.append(int(moment // 3600))
            else:
                self._add_other_inputs(record, int(moment // 3600))

    def _add_other_inputs(self, record: PredictionRecord, hour: int) -> None:
        if record.inputs is None or record.inputs_mode != "raw":
            self.rows_without_inputs += 1
            return
        try:
            self.raw.extend(decode_raw(record.inputs, self.card.n_features))
        except ValueError as exc:
            logger.debug("unusable inputs in record %s: %s", record.inference_id, exc)
            self.rows_without_inputs += 1
            return
        self.raw_hour.append(hour)

    def _all_bins(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        n_features = self.card.n_features
        bins = np.frombuffer(bytes(self.bins), dtype=np.uint8).reshape(-1, n_features)
        hours = np.frombuffer(self.bins_hour, dtype=np.int64).copy()
        if not self.raw_hour:
            return bins, hours
        # Raw captures are binned here, column by column, with the same edges capture uses.
        raw = np.frombuffer(self.raw, dtype=np.float32).reshape(-1, n_features)
        binned = np.empty(raw.shape, dtype=np.uint8)
        for column, feature in enumerate(self.card.baseline.features):
            binned[:, column] = bin_indices(raw[:, column], np.asarray(feature.bin_edges))
        raw_hours = np.frombuffer(self.raw_hour, dtype=np.int64)
        return np.concatenate([bins, binned]), np.concatenate([hours, raw_hours])

    def build(self) -> MatchedRows:
        n_classes = len(self.card.class_names)
        bins, bins_hour = self._all_bins()
        return MatchedRows(
            card=self.card,
            y_true=np.frombuffer(self.y_true, dtype=np.int64).copy(),
            y_pred=np.frombuffer(self.y_pred, dtype=np.int64).copy(),
            probabilities=np.frombuffer(self.probabilities, dtype=np.float32).reshape(-1, n_classes).copy(),
            confidence=np.frombuffer(self.confidence, dtype=np.float32).copy(),
            predicted_at=np.frombuffer(self.predicted_at, dtype=np.float64).copy(),
            bins=bins,
            bins_hour=bins_hour,
            rows_without_inputs=self.rows_without_inputs,
        )


@dataclass
class JoinResult:
    """What became of every row of one label file."""

    read: int
    unknown: int
    duplicate: int
    rejected: list[RejectedRow]
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
        reasons = Counter(_reason_kind(r.reason) for r in self.rejected)
        return {
            "read": self.read,
            "matched": self.matched,
            "unknown": self.unknown,
            "rejected": len(self.rejected),
            "duplicate": self.duplicate,
            "balanced": self.read == self.matched + self.unknown + len(self.rejected) + self.duplicate,
            "rejected_reasons": dict(reasons.most_common()),
            "unknown_examples": self.unknown_examples,
            "duplicate_rows_overridden": self.duplicate_examples,
            "duplicate_policy": DUPLICATE_POLICY,
            "file_error": self.file_error,
        }


def _reason_kind(reason: str) -> str:
    """The reason without the row-specific detail in quotes or parentheses."""
    return re.split(r" \(| '| \"|: ", reason, maxsplit=1)[0]


CardLookup = Callable[[str, str], "ModelCard | None"]


def join_labels(labels: LabelSet, store: PredictionStore, card_for: CardLookup) -> JoinResult:
    """Join the label rows to their recorded predictions, grouped by model version.

    Parameters
    ----------
    labels
        The parsed, de-duplicated rows of one file (from :func:`collect_labels`).
    store
        Where predictions are read; ids it does not return are unknown.
    card_for
        The model card of ``(model name, version)``, or None when there is none; rows joined to a
        version without a card are rejected, since their labels cannot be checked.
    """
    latest = labels.latest
    rejected = list(labels.rejected)
    builders: dict[tuple[str, str], _VersionBuilder | None] = {}

    for batch in store.get_many(list(latest)):
        by_version: dict[tuple[str, str], list[tuple[PredictionRecord, int, str]]] = {}
        for record in batch:
            entry = latest.pop(record.inference_id, None)
            if entry is not None:
                version = (record.model_name, record.model_version)
                by_version.setdefault(version, []).append((record, *entry))
        for version, entries in by_version.items():
            if version not in builders:
                card = card_for(*version)
                builders[version] = _VersionBuilder(card) if card is not None else None
            builder = builders[version]
            if builder is None:
                reason = f"no model card for {version[0]}/{version[1]}"
                rejected.extend(RejectedRow(row, reason, label) for _, row, label in entries)
            else:
                builder.add_batch(entries, rejected)

    versions = {v: b.build() for v, b in builders.items() if b is not None and len(b.y_true)}
    return JoinResult(
        read=labels.read,
        unknown=len(latest),
        duplicate=labels.duplicate_rows,
        rejected=rejected,
        versions=versions,
        unknown_examples=list(latest)[:EXAMPLES_KEPT],
        duplicate_examples=labels.duplicate_examples,
        file_error=labels.file_error,
    )


class InMemoryPredictionStore:
    """A dictionary of records standing in for the table (benchmarks, tests, local runs)."""

    def __init__(self, records: Mapping[str, PredictionRecord], batch_size: int = 1000) -> None:
        self._records = records
        self._batch_size = batch_size

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[list[PredictionRecord]]:
        """Yield the known records in batches of ``batch_size``."""
        for start in range(0, len(inference_ids), self._batch_size):
            chunk = inference_ids[start : start + self._batch_size]
            yield [self._records[i] for i in chunk if i in self._records]


class DynamoDBPredictionStore:
    """Reads ``PredictionsTable`` with BatchGetItem, 100 keys a call, several calls in parallel.

    Keys that DynamoDB returns as unprocessed (throttling, the 16 MB response limit) are asked for
    again with exponential backoff and jitter, up to ``max_attempts`` calls per batch; after that
    :class:`StoreUnavailableError` fails the invocation rather than counting them as unknown.
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

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[list[PredictionRecord]]:
        """Yield the records found, one list per BatchGetItem batch."""
        chunks = [inference_ids[i : i + BATCH_GET_KEYS] for i in range(0, len(inference_ids), BATCH_GET_KEYS)]
        if len(chunks) <= 1:
            yield from map(self._get_batch, chunks)
            return
        # boto3 clients are thread-safe; the calls wait on the network, so threads overlap them.
        with ThreadPoolExecutor(max_workers=min(self._workers, len(chunks))) as pool:
            yield from pool.map(self._get_batch, chunks)

    def _get_batch(self, inference_ids: Sequence[str]) -> list[PredictionRecord]:
        keys: list[dict[str, Any]] = [{"inference_id": {"S": i}} for i in inference_ids]
        found: list[PredictionRecord] = []
        for attempt in range(self._max_attempts):
            if attempt:
                ceiling = min(self._max_delay, self._base_delay * 2**attempt)
                time.sleep(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security
            response = self._client.batch_get_item(RequestItems={self._table: {"Keys": keys}})
            for item in response.get("Responses", {}).get(self._table, []):
                plain = {k: self._deserializer.deserialize(v) for k, v in item.items()}
                found.append(PredictionRecord.from_item(plain))
            unprocessed = response.get("UnprocessedKeys") or {}
            keys = list(unprocessed[self._table]["Keys"]) if self._table in unprocessed else []
            if not keys:
                return found
            logger.debug("batch_get_item left %d keys unprocessed (attempt %d)", len(keys), attempt + 1)
        raise StoreUnavailableError(
            f"{len(keys)} keys of {self._table} still unprocessed after {self._max_attempts} calls"
        )
