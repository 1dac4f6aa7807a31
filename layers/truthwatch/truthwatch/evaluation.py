"""Held-out evaluation of a classifier's predictions, with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from truthwatch.card import HeldoutMetrics


def evaluate_predictions(
    y_true: npt.NDArray[np.integer],
    y_pred: npt.NDArray[np.integer],
    class_names: Sequence[str],
) -> HeldoutMetrics:
    """Accuracy, macro precision, recall and F1, and recall per class.

    A class with no true rows has no defined recall; following scikit-learn's ``zero_division=0``
    policy it scores 0 in the macro averages and is reported as 0.

    Parameters
    ----------
    y_true, y_pred
        Class indices, shape ``(n,)``, ``n >= 1``.
    class_names
        Names in class-index order; every index in ``y_true`` and ``y_pred`` must have one.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if len(y_true) == 0:
        raise ValueError("cannot evaluate zero rows")

    labels = np.arange(len(class_names))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    _, per_class_recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return HeldoutMetrics(
        rows=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)),
        precision_macro=float(precision),
        recall_macro=float(recall),
        f1_macro=float(f1),
        recall_per_class={name: float(r) for name, r in zip(class_names, per_class_recall, strict=True)},
    )
