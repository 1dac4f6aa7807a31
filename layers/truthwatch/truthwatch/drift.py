"""Drift against the model card's training baseline: population stability index (PSI).

``PSI = sum_i (p_i - q_i) * ln(p_i / q_i)`` over the bins, with ``q`` the baseline share and ``p``
the observed share of bin ``i``. An empty bin on either side would make it infinite, so both sides
are smoothed the same way (additive, Jeffreys' ``alpha = 0.5``)::

    p_i = (count_i + alpha) / (n + alpha * bins)

The baseline's counts are its proportions times the training rows recorded in the card. Smoothing
pulls small samples towards uniform, so PSI over a few dozen rows is noisy; read it with the row
count the report gives. The usual reading: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a
significant shift.

Examples
--------
>>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from truthwatch.card import ModelCard

SMOOTHING = 0.5


def psi(
    expected_counts: npt.NDArray[np.floating | np.integer],
    actual_counts: npt.NDArray[np.floating | np.integer],
    alpha: float = SMOOTHING,
) -> float:
    """Population stability index of ``actual_counts`` against ``expected_counts`` (same bins).

    Both are smoothed with ``alpha`` per bin (see the module docstring), so the result is finite
    for any counts, including empty bins on either side.
    """
    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"bins differ: expected {expected.shape}, actual {actual.shape}")
    bins = expected.size
    q = (expected + alpha) / (expected.sum() + alpha * bins)
    p = (actual + alpha) / (actual.sum() + alpha * bins)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass
class Drift:
    """Drift of one set of joined rows.

    Attributes
    ----------
    feature_psi
        PSI per feature name, over the rows with captured inputs; empty when there are none.
    feature_rows
        Rows the feature PSI is computed from.
    prediction_psi
        PSI of the predicted-class counts against the card's class priors.
    mean_confidence
        Mean recorded probability of the predicted class.
    notes
        Why something is missing (no captured inputs, no rows).
    """

    feature_psi: dict[str, float] = field(default_factory=dict)
    feature_rows: int = 0
    prediction_psi: float | None = None
    mean_confidence: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def feature_psi_max(self) -> float | None:
        """The largest feature PSI, or None without captured inputs."""
        return max(self.feature_psi.values()) if self.feature_psi else None

    def summary(self) -> dict[str, Any]:
        """The report section, features sorted from most to least drifted."""
        ranked = sorted(self.feature_psi.items(), key=lambda item: item[1], reverse=True)
        return {
            "feature_psi_max": self.feature_psi_max,
            "feature_rows": self.feature_rows,
            "prediction_psi": self.prediction_psi,
            "mean_confidence": self.mean_confidence,
            "feature_psi": [{"feature": name, "psi": value} for name, value in ranked],
            "smoothing": f"additive, alpha={SMOOTHING} per bin on both sides",
            "notes": self.notes,
        }


def assess_drift(
    card: ModelCard,
    y_pred: npt.NDArray[np.integer],
    confidence: npt.NDArray[np.floating],
    bins: npt.NDArray[np.uint8],
    rows_without_inputs: int = 0,
) -> Drift:
    """Compare the joined rows' inputs and predictions with the card's baseline.

    Parameters
    ----------
    card
        Holds the baseline histograms, class priors and training row count.
    y_pred
        Predicted class indices, shape ``(n,)``.
    confidence
        Probability of the predicted class, shape ``(n,)``.
    bins
        Bin index per feature of the rows with captured inputs, shape ``(m, n_features)``.
    rows_without_inputs
        Rows whose inputs were not captured (``inputs_mode`` ``none``), for the report's note.
    """
    drift = Drift()
    if len(y_pred) == 0:
        drift.notes.append("no matched rows")
        return drift

    train_rows = card.training_data.train_rows
    priors = np.asarray(card.baseline.class_priors) * train_rows
    predicted = np.bincount(y_pred, minlength=len(card.class_names))
    drift.prediction_psi = psi(priors, predicted)
    drift.mean_confidence = float(np.mean(confidence, dtype=np.float64))

    drift.feature_rows = len(bins)
    if rows_without_inputs:
        drift.notes.append(
            f"{rows_without_inputs} rows were recorded without inputs (CAPTURE_INPUTS=none) "
            "and have no feature drift"
        )
    if len(bins) == 0:
        drift.notes.append("no feature drift: no matched row has captured inputs")
        return drift

    observed = bin_counts(bins, [len(f.proportions) for f in card.baseline.features])
    for feature, counts in zip(card.baseline.features, observed, strict=True):
        expected = np.asarray(feature.proportions) * train_rows
        drift.feature_psi[feature.name] = psi(expected, counts)
    return drift


def bin_counts(
    bins: npt.NDArray[np.uint8], n_bins: list[int], chunk_rows: int = 1 << 16
) -> list[npt.NDArray[np.int64]]:
    """Count rows per bin for every feature column of ``bins`` (shape ``(m, n_features)``).

    One ``bincount`` over all columns at once (each column's indices shifted into its own range),
    ``chunk_rows`` rows at a time so the shifted copy stays small. Indices past a feature's last bin
    cannot come from its card's edges; they are clipped into that bin rather than dropped, so every
    row is counted once per feature.
    """
    n_features = len(n_bins)
    width = max(n_bins)
    shift = (np.arange(n_features, dtype=np.int32) * width)[np.newaxis, :]
    limits = (np.asarray(n_bins, dtype=np.int32) - 1)[np.newaxis, :]
    totals = np.zeros(n_features * width, dtype=np.int64)
    for start in range(0, len(bins), chunk_rows):
        block = np.minimum(bins[start : start + chunk_rows].astype(np.int32), limits) + shift
        totals += np.bincount(block.ravel(), minlength=n_features * width)
    grid = totals.reshape(n_features, width)
    return [grid[i, : n_bins[i]] for i in range(n_features)]
