"""The prediction record: what the inference function stores per row and the metrics function joins.

One DynamoDB item per row, keyed by ``inference_id``:

=================  ====  ===========================================================
attribute          type  meaning
=================  ====  ===========================================================
inference_id       S     caller-supplied or generated UUIDv7 (the table key)
model_name         S     the model card's name
model_version      S     the model card's version (content hash)
predicted_at       S     UTC time of the prediction, ISO 8601 with milliseconds
label              S     predicted class name
label_index        N     predicted class index
confidence         N     probability of the predicted class
probabilities      L     one N per class, in the card's class order
inputs_mode        S     ``none``, ``binned`` or ``raw`` (``CAPTURE_INPUTS``)
inputs             B     binned: one uint8 bin index per feature; raw: float32 little
                         endian per feature; absent for ``none``
expires_at         N     epoch seconds; the table's TTL attribute
=================  ====  ===========================================================

Binned inputs use the baseline histogram edges of the model card, which is all drift needs and
far less revealing than the raw values.

The metrics function reads only what it joins on (:class:`StoredPrediction`): ``label`` and
``expires_at`` may be missing from an item it reads, and an item it cannot read is named by its
field (:class:`UnreadableRecordError`) so that one bad item costs one row, not the whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import numpy.typing as npt

from truthwatch.baseline import bin_indices
from truthwatch.card import ModelCard
from truthwatch.errors import TruthwatchError

CaptureMode = Literal["none", "binned", "raw"]
CAPTURE_MODES: tuple[CaptureMode, ...] = get_args(CaptureMode)
PROBABILITY_DIGITS = 6


def parse_capture_mode(value: str) -> CaptureMode:
    """Validate a ``CAPTURE_INPUTS`` setting (case-insensitive)."""
    mode = value.strip().lower()
    if mode not in CAPTURE_MODES:
        raise ValueError(f"CAPTURE_INPUTS must be one of {', '.join(CAPTURE_MODES)}, got {value!r}")
    return mode


def encode_inputs(rows: npt.NDArray[np.float32], mode: CaptureMode, card: ModelCard) -> list[bytes | None]:
    """Encode each row's inputs for storage, as ``mode`` asks.

    Parameters
    ----------
    rows
        The validated batch, shape ``(n, n_features)``.
    mode
        ``none`` stores nothing, ``binned`` one byte per feature, ``raw`` four bytes per feature.
    card
        The model card whose baseline edges define the bins.
    """
    if mode == "none":
        return [None] * len(rows)
    if mode == "raw":
        raw = np.ascontiguousarray(rows, dtype="<f4")
        return [row.tobytes() for row in raw]

    bins = np.empty(rows.shape, dtype=np.uint8)
    for column, feature in enumerate(card.baseline.features):
        bins[:, column] = bin_indices(rows[:, column], np.asarray(feature.bin_edges))
    return [row.tobytes() for row in bins]


def decode_binned(data: bytes, n_features: int) -> npt.NDArray[np.uint8]:
    """Bin index per feature from a ``binned`` record's ``inputs``."""
    bins = np.frombuffer(data, dtype=np.uint8)
    if bins.shape != (n_features,):
        raise ValueError(f"binned inputs hold {bins.size} features, expected {n_features}")
    return bins


def decode_raw(data: bytes, n_features: int) -> npt.NDArray[np.float32]:
    """Feature values from a ``raw`` record's ``inputs``."""
    values = np.frombuffer(data, dtype="<f4")
    if values.shape != (n_features,):
        raise ValueError(f"raw inputs hold {values.size} features, expected {n_features}")
    return values.astype(np.float32)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as records store times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (any ISO 8601 with an offset or ``Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    return moment.astimezone(UTC)


class UnreadableRecordError(TruthwatchError, ValueError):
    """A stored item misses a field, or holds one that does not parse; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        super().__init__(f"{field}: {detail}")


_T = TypeVar("_T")
_REQUIRED = object()


def _read(item: Mapping[str, Any], name: str, parse: Callable[[Any], _T], default: Any = _REQUIRED) -> _T:
    """``parse`` of the field ``name``, or of ``default`` when the item has none and a default is given."""
    if name not in item and default is _REQUIRED:
        raise UnreadableRecordError(name, "missing")
    try:
        return parse(item.get(name, default))
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise UnreadableRecordError(name, str(exc)[:100]) from exc


def _inputs(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return bytes(value.value if hasattr(value, "value") else value)


@dataclass(frozen=True)
class StoredPrediction:
    """The fields of a prediction record the metrics function reads (see the module docstring)."""

    inference_id: str
    model_name: str
    model_version: str
    predicted_at: datetime
    label_index: int
    confidence: float
    probabilities: tuple[float, ...]
    inputs_mode: CaptureMode
    inputs: bytes | None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> StoredPrediction:
        """Read an item (resource layer or deserialised); ``label`` and ``expires_at`` are not needed.

        Raises
        ------
        UnreadableRecordError
            Naming the first field that is missing or does not parse.
        """
        return cls(
            inference_id=_read(item, "inference_id", str),
            model_name=_read(item, "model_name", str),
            model_version=_read(item, "model_version", str),
            predicted_at=_read(item, "predicted_at", lambda v: parse_time(str(v))),
            label_index=_read(item, "label_index", int),
            confidence=_read(item, "confidence", float),
            probabilities=_read(item, "probabilities", lambda v: tuple(float(p) for p in v)),
            inputs_mode=_read(item, "inputs_mode", lambda v: parse_capture_mode(str(v)), "none"),
            inputs=_read(item, "inputs", _inputs, None),
        )


@dataclass(frozen=True)
class PredictionRecord:
    """One recorded prediction (see the module docstring for the stored form)."""

    inference_id: str
    model_name: str
    model_version: str
    predicted_at: datetime
    label: str
    label_index: int
    confidence: float
    probabilities: tuple[float, ...]
    inputs_mode: CaptureMode
    inputs: bytes | None
    expires_at: int

    def to_item(self) -> dict[str, Any]:
        """The item as the boto3 DynamoDB resource layer writes it (numbers as ``Decimal``)."""
        item: dict[str, Any] = {
            "inference_id": self.inference_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "predicted_at": format_time(self.predicted_at),
            "label": self.label,
            "label_index": self.label_index,
            "confidence": _decimal(self.confidence),
            "probabilities": [_decimal(p) for p in self.probabilities],
            "inputs_mode": self.inputs_mode,
            "expires_at": self.expires_at,
        }
        if self.inputs is not None:
            item["inputs"] = self.inputs
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> PredictionRecord:
        """Rebuild a record from an item read by the resource layer (or deserialised by boto3).

        Raises
        ------
        UnreadableRecordError
            A ``ValueError`` naming the first field that is missing or does not parse.
        """
        stored = StoredPrediction.from_item(item)
        return cls(
            inference_id=stored.inference_id,
            model_name=stored.model_name,
            model_version=stored.model_version,
            predicted_at=stored.predicted_at,
            label=_read(item, "label", str),
            label_index=stored.label_index,
            confidence=stored.confidence,
            probabilities=stored.probabilities,
            inputs_mode=stored.inputs_mode,
            inputs=stored.inputs,
            expires_at=_read(item, "expires_at", int),
        )


def expiry(predicted_at: datetime, ttl_days: int) -> int:
    """Epoch seconds at which a record made at ``predicted_at`` expires."""
    return int((predicted_at + timedelta(days=ttl_days)).timestamp())


def _decimal(value: float) -> Decimal:
    if not np.isfinite(value):
        raise ValueError(f"refusing to store a non-finite number ({value})")
    return Decimal(str(round(float(value), PROBABILITY_DIGITS)))
