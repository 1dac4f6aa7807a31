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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from truthwatch.baseline import bin_indices
from truthwatch.card import ModelCard

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
    def from_item(cls, item: dict[str, Any]) -> PredictionRecord:
        """Rebuild a record from an item read by the resource layer (or deserialised by boto3)."""
        inputs = item.get("inputs")
        if inputs is not None and not isinstance(inputs, bytes):
            inputs = bytes(inputs.value if hasattr(inputs, "value") else inputs)
        return cls(
            inference_id=str(item["inference_id"]),
            model_name=str(item["model_name"]),
            model_version=str(item["model_version"]),
            predicted_at=parse_time(str(item["predicted_at"])),
            label=str(item["label"]),
            label_index=int(item["label_index"]),
            confidence=float(item["confidence"]),
            probabilities=tuple(float(p) for p in item["probabilities"]),
            inputs_mode=parse_capture_mode(str(item.get("inputs_mode", "none"))),
            inputs=inputs,
            expires_at=int(item["expires_at"]),
        )


def expiry(predicted_at: datetime, ttl_days: int) -> int:
    """Epoch seconds at which a record made at ``predicted_at`` expires."""
    return int((predicted_at + timedelta(days=ttl_days)).timestamp())


def _decimal(value: float) -> Decimal:
    if not np.isfinite(value):
        raise ValueError(f"refusing to store a non-finite number ({value})")
    return Decimal(str(round(float(value), PROBABILITY_DIGITS)))
