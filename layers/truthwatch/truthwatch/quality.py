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
* fewer than :data:`BOOTSTRAP_MIN_ROWS` rows: no bootstrap standard deviations.

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
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

BOOTSTRAP_MIN_ROWS = 200
BOOTSTRAP_RESAMPLES = 1000

SCALAR_METRICS = (
    "accuracy_score",
    "balanced_accuracy_score",
    "precision_macro_score",
    "recall_macro_score",
    "f1_macro_score",
    "precision_weighted_score",
    "recall_weighted_score",
    "f1_weighted_score",
    "roc_auc_ovr_score",
    "log_loss",
    "constant_accuracy_score",
)
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

    counts = np.bincount(y_true, minlength=n_classes)
    quality.classes_present = int(np.count_nonzero(counts))
    values = quality.values
    values["accuracy_score"] = float(accuracy_score(y_true, y_pred))
    values["constant_accuracy_score"] = float(counts.max() / quality.rows)
    with warnings.catch_warnings():
        # Zero divisions are handled by the policy above; scikit-learn's warnings would only repeat it.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        values["balanced_accuracy_score"] = float(balanced_accuracy_score(y_true, y_pred))
        _averages(quality, y_true, y_pred)
        _probability_metrics(quality, y_true, probabilities, counts)
        if detail:
            _per_class(quality, y_true, y_pred, class_names)

    if detail:
        matrix = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
        quality.confusion = matrix.tolist()
        quality.bootstrap = bootstrap_std(matrix, seed=seed)
    _drop_non_finite(quality)
    return quality


def _averages(quality: Quality, y_true: npt.NDArray[np.integer], y_pred: npt.NDArray[np.integer]) -> None:
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=np.nan
        )
        for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
            key = f"{name}_{average}_score"
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
    n_classes = probabilities.shape[1]
    proba = np.asarray(probabilities, dtype=np.float64)
    # Recorded probabilities are rounded to six digits, so rows sum to 1 only nearly; log loss wants
    # them exact.
    totals = proba.sum(axis=1, keepdims=True)
    proba = np.divide(proba, totals, out=np.full_like(proba, 1.0 / n_classes), where=totals > 0)
    quality.values["log_loss"] = float(log_loss(y_true, proba, labels=np.arange(n_classes)))

    present = np.flatnonzero(counts)
    if len(present) < 2:
        quality.omitted["roc_auc_ovr_score"] = "only one class among the true labels"
        return
    aucs = [binary_auc(y_true == c, proba[:, c]) for c in present]
    quality.values["roc_auc_ovr_score"] = float(np.mean(aucs))


def binary_auc(positive: npt.NDArray[np.bool_], score: npt.NDArray[np.floating]) -> float:
    """ROC AUC of one class from score ranks (the Mann-Whitney U statistic, ties counted half).

    Equal to ``sklearn.metrics.roc_auc_score(positive, score)``; one ranking instead of the full
    ROC curve keeps it fast enough to run per class and per prediction hour on a million rows.
    Both classes must be present.
    """
    n_positive = int(np.count_nonzero(positive))
    n_negative = len(positive) - n_positive
    ranks = rankdata(score)
    u_statistic = float(ranks[positive].sum()) - n_positive * (n_positive + 1) / 2
    return u_statistic / (n_positive * n_negative)


def _per_class(
    quality: Quality,
    y_true: npt.NDArray[np.integer],
    y_pred: npt.NDArray[np.integer],
    class_names: tuple[str, ...],
) -> None:
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=np.nan
    )
    predicted = np.bincount(y_pred, minlength=len(class_names))
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
