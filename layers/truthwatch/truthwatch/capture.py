"""Record every prediction in the predictions table, and lose none when the table says no.

:class:`DynamoDBRecorder` writes a batch with ``BatchWriteItem`` in chunks of 25 (the API's
limit, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html)
and retries the items DynamoDB hands back as unprocessed, with bounded exponential backoff. What
still fails comes back to the caller, who logs each record as one ``capture_failed`` line
(:func:`failure_entry`) that holds the whole item; :func:`read_failure_lines` reads such lines
back from a CloudWatch Logs export or a JSON-lines file, and :func:`replay` puts them into the
table. A put overwrites an item with the same key, so replaying a line twice does no harm.

:class:`MemoryRecorder` keeps records in a list, for benchmarks and tests.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from truthwatch.card import ModelCard
from truthwatch.records import CaptureMode, PredictionRecord, encode_inputs, expiry

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeSerializer
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

BATCH_WRITE_LIMIT = 25
FAILURE_EVENT = "capture_failed"
"""The ``message`` of the log line that carries one lost record."""


class Recorder(Protocol):
    """Where prediction records go."""

    def record(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Store ``records``; return the ones that could not be stored."""
        ...


class LogOnlyRecorder:
    """Stores nothing and hands every record back, so each one is logged as ``capture_failed``.

    What the inference function uses when no table is configured: the records stay replayable
    from the log instead of being dropped.
    """

    def record(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Return all of ``records``."""
        return list(records)


@dataclass
class MemoryRecorder:
    """Keeps records in memory; ``fail`` makes every record come back as lost."""

    records: list[PredictionRecord] = field(default_factory=list)
    fail: bool = False

    def record(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Append ``records`` (or refuse them all when ``fail`` is set)."""
        if self.fail:
            return list(records)
        self.records.extend(records)
        return []


class DynamoDBRecorder:
    """Writes records with ``BatchWriteItem``, retrying unprocessed items a bounded number of times.

    Parameters
    ----------
    client
        A low-level DynamoDB client (``boto3.client("dynamodb")``), built by the caller.
    table_name
        The predictions table.
    attempts
        Calls per chunk at most, the first included; the default with the default delay waits
        at most about 0.35 s per chunk before giving its items up to the log.
    base_delay
        Seconds before the first retry; each retry doubles it, with full jitter.
    sleep
        Replaced in tests to skip the waits.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        attempts: int = 4,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._attempts = attempts
        self._base_delay = base_delay
        self._sleep = sleep

    def record(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Write ``records``; return those still unwritten after the retries."""
        failed: list[PredictionRecord] = []
        for start in range(0, len(records), BATCH_WRITE_LIMIT):
            failed.extend(self._write_chunk(records[start : start + BATCH_WRITE_LIMIT]))
        return failed

    def _write_chunk(self, chunk: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        from botocore.exceptions import BotoCoreError, ClientError

        by_id = {record.inference_id: record for record in chunk}
        pending: list[Any] = [{"PutRequest": {"Item": serialize(record)}} for record in chunk]
        for attempt in range(self._attempts):
            if attempt:
                # Full jitter spreads retries of concurrent environments apart.
                self._sleep(random.uniform(0, self._base_delay * 2 ** (attempt - 1)))  # noqa: S311
            try:
                response = self._client.batch_write_item(RequestItems={self._table: pending})
            except (ClientError, BotoCoreError) as exc:
                logger.debug("batch write failed", extra={"attempt": attempt + 1, "error": str(exc)})
                continue
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))
            if not pending:
                return []
            logger.debug("unprocessed items", extra={"attempt": attempt + 1, "count": len(pending)})

        lost_ids = {str(request["PutRequest"]["Item"]["inference_id"]["S"]) for request in pending}
        return [by_id[key] for key in by_id if key in lost_ids]


def serialize(record: PredictionRecord) -> dict[str, Any]:
    """The record as a low-level DynamoDB item (``{"attr": {"S": ...}}``)."""
    serializer = _type_serializer()
    return {key: serializer.serialize(value) for key, value in record.to_item().items()}


@cache
def _type_serializer() -> TypeSerializer:
    # Imported on first use: boto3 costs a tenth of a second at import, which the cold start of
    # a function that only replays or benchmarks need not pay.
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@dataclass(frozen=True)
class ScoredBatch:
    """A predicted batch as Python lists, computed once for the records and the answer."""

    label_index: list[int]
    confidence: list[float]
    probabilities: list[list[float]]

    @classmethod
    def from_proba(cls, proba: npt.NDArray[np.floating[Any]]) -> ScoredBatch:
        """Predicted class, its probability and every probability per row of ``(n, n_classes)``."""
        index = proba.argmax(axis=1)
        return cls(index.tolist(), proba[np.arange(len(proba)), index].tolist(), proba.tolist())


def build_records(
    ids: Sequence[str],
    card: ModelCard,
    proba: npt.NDArray[np.floating[Any]],
    rows: npt.NDArray[np.float32],
    mode: CaptureMode,
    predicted_at: datetime,
    ttl_days: int,
    scored: ScoredBatch | None = None,
) -> list[PredictionRecord]:
    """One record per row of a predicted batch.

    Parameters
    ----------
    ids
        Inference id per row.
    proba
        Class probabilities, shape ``(n, n_classes)``.
    rows
        The inputs, shape ``(n, n_features)``, encoded as ``mode`` says.
    scored
        ``ScoredBatch.from_proba(proba)`` when the caller already has it.
    """
    scores = ScoredBatch.from_proba(proba) if scored is None else scored
    inputs = binned_inputs(rows, card) if mode == "binned" else encode_inputs(rows, mode, card)
    expires_at = expiry(predicted_at, ttl_days)
    names = card.class_names
    name, version = card.name, card.version
    # Positional arguments, in the field order of PredictionRecord: a thousand records a request
    # make keyword matching a measurable share of the batch's latency.
    return [
        PredictionRecord(
            key,
            name,
            version,
            predicted_at,
            names[index],
            index,
            confidence,
            tuple(probabilities),
            mode,
            encoded,
            expires_at,
        )
        for key, index, confidence, probabilities, encoded in zip(
            ids, scores.label_index, scores.confidence, scores.probabilities, inputs, strict=True
        )
    ]


def binned_inputs(rows: npt.NDArray[np.float32], card: ModelCard) -> list[bytes | None]:
    """Bin index per feature, one byte each, per row: what ``encode_inputs(rows, "binned", card)`` gives.

    One comparison of every value against every inner edge of its feature, counted along the
    edges, instead of a ``searchsorted`` per feature; and one ``tobytes`` for the batch, sliced
    per row. One row costs about 10 microseconds, a thousand about half a millisecond.
    """
    edges = _edge_matrix(card)
    bins = (rows[:, None, :] >= edges[None, :, :]).sum(axis=1, dtype=np.uint8)
    data = bins.tobytes()
    width = rows.shape[1]
    return [data[start : start + width] for start in range(0, len(data), width)]


_edge_cache: dict[str, npt.NDArray[np.float64]] = {}


def _edge_matrix(card: ModelCard) -> npt.NDArray[np.float64]:
    """Inner bin edges, shape ``(max_edges, n_features)``: edge ``k`` of every feature in row ``k``."""
    # Features may have different edge counts; +inf pads the short ones, and no value reaches it.
    key = f"{card.name}/{card.version}"
    matrix = _edge_cache.get(key)
    if matrix is None:
        features = card.baseline.features
        width = max(len(f.bin_edges) for f in features)
        matrix = np.full((width, len(features)), np.inf)
        for column, feature in enumerate(features):
            matrix[: len(feature.bin_edges), column] = feature.bin_edges
        _edge_cache[key] = matrix
    return matrix


def failure_entry(record: PredictionRecord) -> dict[str, Any]:
    """What a ``capture_failed`` log line carries: the whole item, bytes as base64, numbers as text.

    Numbers stay strings so that the replayed item holds exactly the decimals the table would
    have held; the inputs are those ``CAPTURE_INPUTS`` chose (binned by default), never more.
    """
    item = record.to_item()
    entry: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, bytes):
            entry[key] = base64.b64encode(value).decode("ascii")
        elif isinstance(value, list):
            entry[key] = [str(v) for v in value]
        elif isinstance(value, str):
            entry[key] = value
        else:
            entry[key] = str(value)
    return entry


def record_from_entry(entry: dict[str, Any]) -> PredictionRecord:
    """Inverse of :func:`failure_entry`.

    Raises
    ------
    ValueError, KeyError
        When the entry misses a field or holds one that does not parse.
    """
    item = dict(entry)
    if item.get("inputs") is not None:
        item["inputs"] = base64.b64decode(item["inputs"], validate=True)
    return PredictionRecord.from_item(item)


@dataclass(frozen=True)
class ReadResult:
    """What :func:`read_failure_lines` found in a file."""

    records: list[PredictionRecord]
    skipped: int
    invalid: int


def read_failure_lines(lines: Iterable[str]) -> ReadResult:
    """The lost records in log lines, whatever else the lines hold.

    A line counts when, from its first ``{`` on, it is a JSON object whose ``message`` is
    ``capture_failed`` and which carries a ``record``; that covers Powertools JSON lines as
    Lambda writes them, CloudWatch Logs exports to S3 (a timestamp, a space, the line) and
    ``aws logs filter-log-events`` text output. Every other line is skipped; a
    ``capture_failed`` line whose record does not parse counts as invalid.
    """
    records: list[PredictionRecord] = []
    skipped = invalid = 0
    for line in lines:
        entry = _failure_payload(line)
        if entry is None:
            skipped += 1
            continue
        try:
            records.append(record_from_entry(entry))
        except (ValueError, KeyError, TypeError):
            invalid += 1
    return ReadResult(records=records, skipped=skipped, invalid=invalid)


def _failure_payload(line: str) -> dict[str, Any] | None:
    start = line.find("{")
    if start < 0 or FAILURE_EVENT not in line:
        return None
    try:
        document = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("message") != FAILURE_EVENT:
        return None
    payload = document.get("record")
    return payload if isinstance(payload, dict) else None


def replay(records: Sequence[PredictionRecord], recorder: Recorder) -> list[PredictionRecord]:
    """Put lost records back; return the ones that failed again."""
    return recorder.record(records)
