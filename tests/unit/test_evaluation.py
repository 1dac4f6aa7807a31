import numpy as np
import pytest

from truthwatch.evaluation import evaluate_predictions


def test_metrics_match_a_hand_count():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])

    metrics = evaluate_predictions(y_true, y_pred, ("a", "b", "c"))

    assert metrics.rows == 6
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.recall_per_class == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    assert metrics.recall_macro == pytest.approx(2 / 3)
    # precision: a = 1/2, b = 2/3, c = 1/1
    assert metrics.precision_macro == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_a_class_without_rows_scores_zero_not_nan():
    metrics = evaluate_predictions(np.array([0, 0]), np.array([0, 0]), ("a", "b"))

    assert metrics.recall_per_class == {"a": 1.0, "b": 0.0}
    assert metrics.recall_macro == 0.5


def test_zero_rows_is_an_error():
    with pytest.raises(ValueError, match="zero rows"):
        evaluate_predictions(np.array([], dtype=int), np.array([], dtype=int), ("a",))
