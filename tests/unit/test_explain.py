"""Integrated gradients with numerical gradients: exact on a known function, complete on the model."""

from pathlib import Path

import numpy as np
import pytest

from truthwatch.dataset import load_digits_split
from truthwatch.explain import COMPLETENESS_TOLERANCE, integrated_gradients, output_difference
from truthwatch.runtime import load_runtime


def _linear_softmax(weights: np.ndarray):
    def predict(batch: np.ndarray) -> np.ndarray:
        logits = batch.astype(np.float64) @ weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    return predict


def test_a_feature_the_model_ignores_gets_no_attribution():
    weights = np.array([[1.0, -1.0], [0.0, 0.0], [0.5, 0.2]])
    predict = _linear_softmax(weights)
    row = np.array([2.0, 5.0, 1.0], dtype=np.float32)

    attributions = integrated_gradients(predict, row, target=0, steps=64)

    assert attributions[1] == pytest.approx(0.0, abs=1e-4)
    assert attributions[0] > attributions[2] > 0
    assert attributions.sum() == pytest.approx(output_difference(predict, row, 0), abs=1e-3)


def test_a_row_equal_to_the_baseline_has_zero_attributions():
    predict = _linear_softmax(np.eye(3))

    attributions = integrated_gradients(predict, np.ones(3, dtype=np.float32), 1, baseline=np.ones(3))

    assert np.all(attributions == 0.0)


@pytest.mark.slow
def test_attributions_of_the_digits_model_sum_to_the_output_difference(model_dir: Path):
    runtime = load_runtime(model_dir)
    split = load_digits_split()

    for row in split.x_heldout[:10]:
        target = int(runtime.predict(row[None, :])[0][0])
        attributions = integrated_gradients(runtime.predict_proba, row, target)
        expected = output_difference(runtime.predict_proba, row, target)
        assert attributions.shape == (64,)
        assert abs(attributions.sum() - expected) <= COMPLETENESS_TOLERANCE
        assert np.all(attributions[row == 0] == 0.0)  # blank pixels carry no attribution


@pytest.mark.slow
def test_card_holds_mean_attributions_per_predicted_class(exported_model):
    attributions = exported_model.card.attributions

    assert attributions is not None
    assert sum(attributions.rows_by_class.values()) == 360
    assert set(attributions.by_class) == set("0123456789")
    for name, values in attributions.by_class.items():
        assert len(values) == 64
        assert max(values) > 0  # some ink argues for the predicted class
        # the row mean of f(x) - f(0) is positive: the prediction moved towards the class
        assert sum(values) > 0, name
