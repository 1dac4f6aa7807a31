"""PSI with smoothing: finite for empty bins, zero for identical distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.test_join import small_card
from truthwatch.drift import assess_drift, psi


def test_drift_psi_of_identical_distributions_is_zero() -> None:
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0, abs=0.02)
    assert psi(np.array([100, 200, 300]), np.array([100, 200, 300])) == 0.0


def test_drift_psi_is_finite_with_empty_bins_on_either_side() -> None:
    value = psi(np.array([100, 0, 0]), np.array([0, 0, 50]))

    assert math.isfinite(value) and value > 5


def test_drift_psi_matches_the_smoothed_formula() -> None:
    expected, actual = np.array([60.0, 40.0]), np.array([30.0, 70.0])
    q = (expected + 0.5) / 101
    p = (actual + 0.5) / 101

    assert psi(expected, actual) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))


def test_drift_psi_refuses_different_bins() -> None:
    with pytest.raises(ValueError, match="bins differ"):
        psi(np.array([1, 2]), np.array([1, 2, 3]))


def test_drift_finds_the_feature_that_moved() -> None:
    card = small_card(n_features=4, n_classes=3)
    rng = np.random.default_rng(5)
    bins = rng.integers(0, 9, size=(2000, 4)).astype(np.uint8)
    bins[:, 2] = 8  # every row in the top bin

    drift = assess_drift(card, rng.integers(0, 3, 2000), np.full(2000, 0.9, dtype=np.float32), bins)

    assert max(drift.feature_psi, key=lambda name: drift.feature_psi[name]) == "f2"
    assert drift.feature_psi["f2"] > 1.0
    assert drift.feature_psi["f0"] < 0.1
    assert drift.prediction_psi is not None and drift.prediction_psi < 0.1
    assert drift.mean_confidence == pytest.approx(0.9)


def test_drift_without_captured_inputs_says_so() -> None:
    card = small_card()

    drift = assess_drift(
        card, np.array([0, 1]), np.array([0.5, 0.6]), np.zeros((0, 4), dtype=np.uint8), rows_without_inputs=2
    )

    assert drift.feature_psi == {} and drift.feature_psi_max is None
    assert any("no feature drift" in note for note in drift.notes)
    assert drift.summary()["feature_rows"] == 0


@pytest.mark.parametrize(
    ("rows", "published"), [(60, set()), (199, set()), (200, {"feature_psi_max", "prediction_psi"})]
)
def test_drift_psi_from_fewer_than_200_rows_is_omitted_with_the_reason(
    rows: int, published: set[str]
) -> None:
    card = small_card(n_features=4, n_classes=3)
    rng = np.random.default_rng(7)
    bins = rng.integers(0, 9, size=(rows, 4)).astype(np.uint8)

    drift = assess_drift(card, rng.integers(0, 3, rows), np.full(rows, 0.9, dtype=np.float32), bins)

    assert set(drift.published()) == published
    assert drift.prediction_psi is not None and drift.feature_psi_max is not None  # shown in the report
    if not published:
        assert drift.omitted == {
            "feature_psi_max": f"fewer than 200 rows with captured inputs ({rows})",
            "prediction_psi": f"fewer than 200 matched rows ({rows})",
        }
        assert drift.summary()["omitted"] == drift.omitted
