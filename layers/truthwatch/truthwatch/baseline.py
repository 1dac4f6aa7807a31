"""Baseline histograms of the training inputs, and the binning that capture and drift share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from truthwatch.card import Baseline, FeatureBaseline

DEFAULT_BINS = 8


def shared_edges(x: npt.NDArray[np.floating], bins: int = DEFAULT_BINS) -> tuple[float, ...]:
    """Inner cut points that split the training data's overall value range into equal-width bins.

    One set of edges for every feature keeps features of one kind (pixels, here) comparable, and
    still shows drift in a feature that was constant in training: a pixel always 0 in training
    that lights up in production moves to another bin.
    """
    low, high = float(np.min(x)), float(np.max(x))
    if high <= low:
        return (low,)
    return tuple(float(edge) for edge in np.linspace(low, high, bins + 1)[1:-1])


def bin_indices(x: npt.NDArray[np.floating], edges: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
    """Bin index of every value, with open-ended first and last bins (``0 .. len(edges)``)."""
    return np.searchsorted(edges, x, side="right")


def build_baseline(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    feature_names: tuple[str, ...],
    n_classes: int,
    bins: int = DEFAULT_BINS,
) -> Baseline:
    """Histogram every feature of ``x`` and count the class priors of ``y``.

    Parameters
    ----------
    x
        Training rows, shape ``(n, n_features)``.
    y
        Class indices, shape ``(n,)``.
    feature_names
        One name per column of ``x``.
    n_classes
        Number of classes, so a class absent from ``y`` still gets its (zero) prior.
    """
    edges = shared_edges(x, bins)
    edge_array = np.asarray(edges)
    features = []
    for column, name in enumerate(feature_names):
        counts = np.bincount(bin_indices(x[:, column], edge_array), minlength=len(edges) + 1)
        proportions = tuple(float(c) for c in counts / counts.sum())
        features.append(FeatureBaseline(name=name, bin_edges=edges, proportions=proportions))

    priors = np.bincount(y, minlength=n_classes) / len(y)
    return Baseline(features=tuple(features), class_priors=tuple(float(p) for p in priors))
