"""Quality metrics: scikit-learn's values where defined, the omission policy where not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from truthwatch.quality import (
    LABEL_METRICS,
    SCALAR_METRICS,
    assess_quality,
    binary_auc,
    bootstrap_std,
    confusion_counts,
    label_scores,
)

CLASSES = tuple(str(i) for i in range(4))


def _data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=n)
    logits = rng.normal(size=(n, 4)) + 2.0 * np.eye(4)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, proba.argmax(axis=1), proba.astype(np.float32)


def test_quality_matches_scikit_learn_when_everything_is_defined() -> None:
    y_true, y_pred, proba = _data(500)

    q = assess_quality(y_true, y_pred, proba, CLASSES)

    assert q.omitted == {}
    assert q.values["accuracy_score"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert q.values["balanced_accuracy_score"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert q.values["precision_macro_score"] == pytest.approx(
        precision_score(y_true, y_pred, average="macro")
    )
    assert q.values["recall_weighted_score"] == pytest.approx(
        recall_score(y_true, y_pred, average="weighted")
    )
    assert q.values["f1_weighted_score"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert q.values["roc_auc_ovr_score"] == pytest.approx(
        roc_auc_score(y_true, proba, multi_class="ovr"), rel=1e-6
    )
    exact = proba.astype(np.float64) / proba.astype(np.float64).sum(axis=1, keepdims=True)
    assert q.values["log_loss"] == pytest.approx(log_loss(y_true, exact), rel=1e-5)
    assert q.values["constant_accuracy_score"] == pytest.approx(np.bincount(y_true).max() / 500)
    assert np.array(q.confusion).sum() == 500
    assert [c["support"] for c in q.per_class] == np.bincount(y_true, minlength=4).tolist()


def test_quality_with_no_rows_omits_every_metric() -> None:
    empty = np.array([], dtype=np.int64)

    q = assess_quality(empty, empty, np.zeros((0, 4), dtype=np.float32), CLASSES)

    assert q.values == {}
    assert set(q.omitted) == set(SCALAR_METRICS)
    assert set(q.omitted.values()) == {"no matched rows"}


def test_quality_with_one_true_class_omits_roc_auc_only() -> None:
    y_true = np.zeros(50, dtype=np.int64)
    y_pred = np.array([0] * 40 + [1] * 10)
    proba = np.tile(np.array([0.7, 0.1, 0.1, 0.1], dtype=np.float32), (50, 1))

    q = assess_quality(y_true, y_pred, proba, CLASSES)

    assert q.omitted == {
        "roc_auc_ovr_score": "only one class among the true labels",
        "accuracy_score_std": "fewer than 200 rows",  # 50 rows: no bootstrap, and the report says so
        "f1_macro_score_std": "fewer than 200 rows",
    }
    assert q.values["accuracy_score"] == pytest.approx(0.8)
    # Class 1 was predicted but never labelled: its recall is undefined and left out of the average.
    assert q.values["recall_macro_score"] == pytest.approx(0.8)
    assert q.per_class[1]["omitted"] == {"recall": "absent from the labels"}
    assert q.per_class[2]["omitted"] == dict.fromkeys(
        ("precision", "recall", "f1"), "neither labelled nor predicted"
    )


def test_quality_precision_of_a_class_never_predicted_is_omitted_not_zero() -> None:
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1])
    proba = np.eye(4, dtype=np.float32)[y_pred]

    q = assess_quality(y_true, y_pred, proba, CLASSES)

    assert "precision" not in q.per_class[2] and q.per_class[2]["omitted"] == {"precision": "never predicted"}
    assert q.values["precision_macro_score"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert np.isfinite(q.values["log_loss"])  # one-hot probabilities are clipped, never infinite


def test_quality_values_always_serialise_to_strict_json() -> None:
    y_true, y_pred, proba = _data(300)
    proba[:5] = 0.0  # rows without any probability mass must not produce NaN

    q = assess_quality(y_true, y_pred, proba, CLASSES)

    json.dumps({"values": q.values, "per_class": q.per_class, "bootstrap": q.bootstrap}, allow_nan=False)


def test_quality_bootstrap_needs_200_rows() -> None:
    y_true, y_pred, proba = _data(199)

    assert assess_quality(y_true, y_pred, proba, CLASSES).bootstrap is None
    assert assess_quality(*_data(200), CLASSES).bootstrap is not None


@pytest.mark.slow
def test_quality_bootstrap_from_the_confusion_matrix_matches_resampling_rows() -> None:
    y_true, y_pred, _ = _data(400, seed=3)
    matrix = np.zeros((4, 4), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    rng = np.random.default_rng(7)
    resampled = [rng.integers(0, 400, size=400) for _ in range(600)]
    row_accuracy = np.std([accuracy_score(y_true[i], y_pred[i]) for i in resampled], ddof=1)
    row_f1 = np.std(
        [
            f1_score(y_true[i], y_pred[i], average="macro", labels=range(4), zero_division=0)
            for i in resampled
        ],
        ddof=1,
    )

    result = bootstrap_std(matrix, resamples=4000, seed=11)

    assert result is not None
    assert result["accuracy_score_std"] == pytest.approx(row_accuracy, rel=0.15)
    assert result["f1_macro_score_std"] == pytest.approx(row_f1, rel=0.15)


def test_quality_binary_auc_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(4)
    positive = rng.random(1000) < 0.3
    score = np.round(rng.random(1000) + positive * 0.3, 1)  # rounding makes many ties

    assert binary_auc(positive, score) == pytest.approx(roc_auc_score(positive, score), rel=1e-12)


def test_quality_from_the_confusion_matrix_equals_scikit_learn_on_the_rows() -> None:
    # Class 3 is never labelled and class 2 never predicted: zero divisions on both sides.
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 3, 0, 1, 0, 0, 3])

    q = label_scores(confusion_counts(y_true, y_pred, 4)[0], LABEL_METRICS)

    assert q.values["accuracy_score"] == pytest.approx(accuracy_score(y_true, y_pred))
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected_balanced = balanced_accuracy_score(y_true, y_pred)
    assert q.values["balanced_accuracy_score"] == pytest.approx(expected_balanced)
    for average in ("macro", "weighted"):
        assert q.values[f"f1_{average}_score"] == pytest.approx(
            f1_score(y_true, y_pred, average=average, zero_division=np.nan)
        )
        assert q.values[f"precision_{average}_score"] == pytest.approx(
            precision_score(y_true, y_pred, average=average, zero_division=np.nan)
        )


def test_quality_confusion_counts_splits_rows_by_group() -> None:
    matrices = confusion_counts(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2, np.array([1, 0, 1, 1]), 2)

    assert matrices.tolist() == [[[0, 0], [0, 1]], [[2, 0], [1, 0]]]


def test_quality_below_200_rows_lists_the_bootstrap_deviations_as_omitted() -> None:
    few = assess_quality(*_data(199), CLASSES)
    enough = assess_quality(*_data(200), CLASSES)

    assert few.bootstrap is None
    assert few.omitted["accuracy_score_std"] == few.omitted["f1_macro_score_std"] == "fewer than 200 rows"
    assert enough.bootstrap is not None and enough.bootstrap["accuracy_score_std"] > 0
    assert "accuracy_score_std" not in enough.omitted and "f1_macro_score_std" not in enough.omitted
