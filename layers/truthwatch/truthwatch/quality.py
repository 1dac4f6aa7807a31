"""Model quality over joined rows, with scikit-learn, and one policy for what is undefined.

The undefined-metric policy
---------------------------
A metric that is undefined for the rows at hand is **omitted**, and :attr:`Quality.omitted` says why;
it is never NaN, infinity or a made-up 0. The cases:

* no matched rows: every metric is omitted;
* one class only among the true labels: ROC AUC is omitted (it needs positives and negatives);
* zero division in a per-class value: precision of a class never predicted, recall of a class absent
  from the labels. That class's value is omitted, and macro and weighted averages are taken over
  the classes whose value is defined (scikit-learn's ``zero_division=np.nan``); an average with no
  defined class is omitted;
* fewer than :data:`BOOTSTRAP_MIN_ROWS` rows: no bootstrap standard deviations; ``accuracy_score_std``
  and ``f1_macro_score_std`` are listed as omitted.

ROC AUC is the unweighted mean of one-vs-rest AUCs over the classes present among the true labels,
which equals scikit-learn's ``roc_auc_score(multi_class="ovr")`` when every class is present and
stays defined when some are not (each class's AUC comes from score ranks, see :func:`binary_auc`).

Examples
--------
>>> import numpy as np
>>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> q = assess_quality(np.array([0, 1, 1]), np.array([0, 1, 0]), proba, ("a", "b"))
>>> round(q.values["accuracy_score"], 4)
0.6667
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    precision_recall_fscore_support,
)

BOOTSTRAP_MIN_ROWS = 200
BOOTSTRAP_METRICS = ("accuracy_score_std", "f1_macro_score_std")
"""The bootstrap's standard deviations, in the report's ``quality.bootstrap``."""
BOOTSTRAP_RESAMPLES = 1000
LOG_LOSS_CHUNK_ROWS = 1 << 16

LABEL_METRICS = (
    "accuracy_score",
    "balanced_accuracy_score",
    "precision_macro_score",
    "recall_macro_score",
    "f1_macro_score",
    "precision_weighted_score",
    "recall_weighted_score",
    "f1_weighted_score",
)
"""The metrics that depend on the labels only, so on the confusion matrix only."""

SCALAR_METRICS = (*LABEL_METRICS, "roc_auc_ovr_score", "log_loss", "constant_accuracy_score")
"""Every scalar :func:`assess_quality` may report, named as in :mod:`truthwatch.telemetry`."""


@dataclass
class Quality:
    """Quality of one set of joined rows.

    Attributes
    ----------
    rows
        Rows assessed.
    values
        Defined scalar metrics by name (a subset of :data:`SCALAR_METRICS`), all finite.
    omitted
        Metric name to the reason it is undefined here.
    per_class
        One entry per class of the card: ``class``, ``support`` and, when defined, ``precision``,
        ``recall`` and ``f1`` (an undefined one is left out and named in ``omitted``).
    confusion
        ``confusion[i][j]`` counts rows of true class ``i`` predicted as ``j``, every class of the
        card in order.
    bootstrap
        Standard deviations of accuracy and macro F1 over resamples, for enough rows.
    """

    rows: int
    values: dict[str, float] = field(default_factory=dict)
    omitted: dict[str, str] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    bootstrap: dict[str, Any] | None = None
    classes_present: int = 0


def assess_quality(
    y_true: npt.NDArray[np.integer],
    y_pred: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.floating],
    class_names: tuple[str, ...],
    *,
    detail: bool = True,
    seed: int = 0,
) -> Quality:
    """Compute every quality metric that is defined for these rows.

    Parameters
    ----------
    y_true, y_pred
        Class indices into ``class_names``, shape ``(n,)``.
    probabilities
        Recorded probabilities, shape ``(n, len(class_names))``.
    class_names
        The model card's classes.
    detail
        Also compute per-class values, the confusion matrix and the bootstrap (the report needs
        them; the hourly values published to CloudWatch do not).
    seed
        Seed of the bootstrap, so a report is reproducible.
    """
    n_classes = len(class_names)
    quality = Quality(rows=len(y_true))
    if quality.rows == 0:
        quality.omitted = dict.fromkeys(SCALAR_METRICS, "no matched rows")
        return quality

    matrix = confusion_counts(y_true, y_pred, n_classes)[0]
    counts = matrix.sum(axis=1)
    quality.classes_present = int(np.count_nonzero(counts))
    quality.values["constant_accuracy_score"] = float(counts.max() / quality.rows)
    with warnings.catch_warnings():
        # Zero divisions are handled by the policy above; scikit-learn's warnings would only repeat it.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        _label_metrics(quality, matrix, LABEL_METRICS)
        _probability_metrics(quality, y_true, probabilities, counts)
        if detail:
            _per_class(quality, matrix, class_names)

    if detail:
        quality.confusion = matrix.tolist()
        quality.bootstrap = bootstrap_std(matrix, seed=seed)
        if quality.bootstrap is None:
            quality.omitted.update(dict.fromkeys(BOOTSTRAP_METRICS, f"fewer than {BOOTSTRAP_MIN_ROWS} rows"))
    _drop_non_finite(quality)
    return quality


def confusion_counts(
    y_true: npt.NDArray[np.integer],
    y_pred: npt.NDArray[np.integer],
    n_classes: int,
    groups: npt.NDArray[np.integer] | None = None,
    n_groups: int = 1,
) -> npt.NDArray[np.int64]:
    """Confusion matrices of every group of rows in one pass, shape ``(n_groups, n_classes, n_classes)``.

    ``[g, i, j]`` counts the rows of group ``g`` (``groups[row] == g``) with true class ``i``
    predicted as ``j``, scikit-learn's ``confusion_matrix`` layout; without ``groups`` every row is
    in group 0.
    """
    cell = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    if groups is not None:
        cell += np.asarray(groups, dtype=np.int64) * (n_classes * n_classes)
    counts = np.bincount(cell, minlength=n_groups * n_classes * n_classes)
    return counts.reshape(n_groups, n_classes, n_classes)


def _cells(
    matrix: npt.NDArray[np.integer],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.integer]]:
    """The confusion matrix as weighted rows: true class, predicted class, count (non-zero cells).

    Every metric computed from labels alone depends on the rows only through their confusion
    matrix, so scikit-learn given these few weighted rows returns what it returns for all the rows,
    at a cost that does not grow with them. Empty cells are left out: scikit-learn counts a class
    as present when any row names it, whatever its weight.
    """
    true_class, predicted_class = np.nonzero(matrix)
    return true_class, predicted_class, matrix[true_class, predicted_class]


HOURLY_METRICS = ("accuracy_score", "f1_macro_score")
"""The quality metrics computed per prediction hour (the alarms and graphs watch these)."""


def label_scores(matrix: npt.NDArray[np.integer], names: tuple[str, ...] = HOURLY_METRICS) -> Quality:
    """Metrics of :data:`LABEL_METRICS` named in ``names``, from one confusion matrix.

    The same values and omission policy as :func:`assess_quality`; the per-hour values use it.
    """
    quality = Quality(rows=int(matrix.sum()))
    if quality.rows == 0:
        quality.omitted = dict.fromkeys(names, "no matched rows")
        return quality
    quality.classes_present = int(np.count_nonzero(matrix.sum(axis=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        _label_metrics(quality, matrix, names)
    _drop_non_finite(quality)
    return quality


def _label_metrics(quality: Quality, matrix: npt.NDArray[np.integer], names: tuple[str, ...]) -> None:
    y_true, y_pred, weight = _cells(matrix)
    if "accuracy_score" in names:
        quality.values["accuracy_score"] = float(accuracy_score(y_true, y_pred, sample_weight=weight))
    if "balanced_accuracy_score" in names:
        quality.values["balanced_accuracy_score"] = float(
            balanced_accuracy_score(y_true, y_pred, sample_weight=weight)
        )
    for average in ("macro", "weighted"):
        keys = {m: f"{m}_{average}_score" for m in ("precision", "recall", "f1")}
        if not any(key in names for key in keys.values()):
            continue
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=np.nan, sample_weight=weight
        )
        for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
            key = keys[name]
            if key not in names:
                continue
            if value is None or not math.isfinite(float(value)):
                quality.omitted[key] = f"{name} is undefined for every class (zero division)"
            else:
                quality.values[key] = float(value)


def _probability_metrics(
    quality: Quality,
    y_true: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.floating],
    counts: npt.NDArray[np.intp],
) -> None:
    # Recorded probabilities are rounded to six digits, so rows sum to 1 only nearly; log loss wants
    # them exact, and ROC AUC is computed on the same normalised values. A row summing to 0 (never
    # recorded in practice) counts as uniform.
    totals = probabilities.sum(axis=1, dtype=np.float64)
    quality.values["log_loss"] = _log_loss(y_true, probabilities, totals)

    present = np.flatnonzero(counts)
    if len(present) < 2:
        quality.omitted["roc_auc_ovr_score"] = "only one class among the true labels"
        return
    aucs = [binary_auc(y_true == c, _normalised(probabilities[:, c], totals, len(counts))) for c in present]
    quality.values["roc_auc_ovr_score"] = float(np.mean(aucs))


def _normalised(
    values: npt.NDArray[np.floating], totals: npt.NDArray[np.float64], n_classes: int
) -> npt.NDArray[np.float64]:
    """Probabilities over row totals in float64: ``(n, k)`` over ``(n, 1)``, or ``(n,)`` over ``(n,)``."""
    out = np.full(values.shape, 1.0 / n_classes, dtype=np.float64)
    np.divide(values, totals, out=out, where=totals > 0)
    return out


def _log_loss(
    y_true: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.floating],
    totals: npt.NDArray[np.float64],
    chunk_rows: int = LOG_LOSS_CHUNK_ROWS,
) -> float:
    """scikit-learn's log loss, summed over blocks of rows and divided once.

    The float64 copies scikit-learn makes of a million rows of probabilities would cost several
    hundred MB at once; block by block they stay a few MB, and the mean of the sums is the same.
    """
    n_classes = probabilities.shape[1]
    labels = np.arange(n_classes)
    total = 0.0
    for start in range(0, len(y_true), chunk_rows):
        stop = start + chunk_rows
        block = _normalised(probabilities[start:stop], totals[start:stop, np.newaxis], n_classes)
        total += float(log_loss(y_true[start:stop], block, labels=labels, normalize=False))
    return total / len(y_true)


def binary_auc(positive: npt.NDArray[np.bool_], score: npt.NDArray[np.floating]) -> float:
    """ROC AUC of one class: the share of (positive, negative) pairs ranked right, ties counted half.

    This is the Mann-Whitney U statistic over ``n_positive * n_negative``, equal to
    ``sklearn.metrics.roc_auc_score(positive, score)``. Both sides are sorted and every positive
    score is placed among the negatives by binary search, which costs two sorts instead of building
    the ROC curve, fast enough for every class of a million rows. Both classes must be present.
    """
    negatives = np.sort(score[~positive])
    positives = np.sort(score[positive])
    below = np.searchsorted(negatives, positives, side="left")
    up_to = np.searchsorted(negatives, positives, side="right")
    pairs_right = 2 * int(below.sum()) + int((up_to - below).sum())
    return pairs_right / (2 * len(positives) * len(negatives))


def _per_class(quality: Quality, matrix: npt.NDArray[np.integer], class_names: tuple[str, ...]) -> None:
    y_true, y_pred, weight = _cells(matrix)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true,
        y_pred,
        labels=np.arange(len(class_names)),
        average=None,
        zero_division=np.nan,
        sample_weight=weight,
    )
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    for index, name in enumerate(class_names):
        entry: dict[str, Any] = {
            "class": name,
            "support": int(support[index]),
            "predicted": int(predicted[index]),
        }
        for metric, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            value = float(values[index])
            if math.isfinite(value):
                entry[metric] = value
            else:
                entry.setdefault("omitted", {})[metric] = (
                    "never predicted" if metric == "precision" else "absent from the labels"
                )
        if support[index] == 0 and predicted[index] == 0:
            entry["omitted"] = dict.fromkeys(("precision", "recall", "f1"), "neither labelled nor predicted")
            for metric in ("precision", "recall", "f1"):
                entry.pop(metric, None)
        quality.per_class.append(entry)


def bootstrap_std(
    matrix: npt.NDArray[np.integer], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any] | None:
    """Bootstrap standard deviations of accuracy and macro F1 from a confusion matrix.

    Resampling ``n`` rows with replacement gives each cell of the confusion matrix a multinomial
    count with the observed cell shares, and both metrics depend on the rows only through that
    matrix, so the resamples are drawn as matrices directly: the same distribution as resampling
    rows, at a cost that does not grow with ``n``. Macro F1 of a resample averages over the classes
    of the original rows (labelled or predicted); a class that vanishes from a resample scores 0.

    Returns None below :data:`BOOTSTRAP_MIN_ROWS` rows.
    """
    n = int(matrix.sum())
    if n < BOOTSTRAP_MIN_ROWS:
        return None
    k = matrix.shape[0]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, matrix.ravel() / n, size=resamples).reshape(resamples, k, k).astype(np.float64)

    true_positive = np.diagonal(draws, axis1=1, axis2=2)
    accuracy = true_positive.sum(axis=1) / n
    actual = draws.sum(axis=2)
    predicted = draws.sum(axis=1)
    denominator = actual + predicted
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    macro_f1 = f1[:, present].mean(axis=1)
    return {
        "resamples": resamples,
        "accuracy_score_std": float(accuracy.std(ddof=1)),
        "f1_macro_score_std": float(macro_f1.std(ddof=1)),
        "method": "multinomial resampling of the confusion matrix (equivalent to resampling rows)",
    }


def _drop_non_finite(quality: Quality) -> None:
    # A last guard: nothing non-finite may leave this module, whatever a library returned.
    for name, value in list(quality.values.items()):
        if not math.isfinite(value):
            del quality.values[name]
            quality.omitted[name] = "not a finite number for these rows"
