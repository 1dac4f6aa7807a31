"""``POST /explain``: per-feature attributions of each row's predicted class.

The method is integrated gradients with numerical gradients (:mod:`truthwatch.explain`): the
serving image's LiteRT back end has no TensorFlow and so no automatic differentiation, and
central differences of the model's own outputs need nothing but ``predict_proba``, so the same
code explains on both back ends. Each row costs ``2 * steps * n_features`` model evaluations
(4,096 for the digits), which is why the row limit (``MAX_EXPLAIN_ROWS``) is small.

The attributions of a row sum to ``f(x) - f(0)``, the predicted class's probability at the row
minus at the all-zero baseline, within :data:`~truthwatch.explain.COMPLETENESS_TOLERANCE`; the
answer carries both probabilities so a caller can check it. The tolerance holds for rows like the
training data; far outside it the model saturates between path points and the sum misses, so
each explanation also states its measured gap and whether it exceeds the tolerance.
Explanations are not predictions: nothing is recorded and no prediction metric is published.

A quantized variant is explained through the float32 flatbuffer of the same version (bundled in
every image): its outputs move in quantization steps, so central differences measure the steps,
not the function. Measured on 40 held-out digits, ``|sum(attributions) - (f(x) - f(0))|`` was at
most 0.004 on float32, but up to 1.4 on ``dynamic_range`` and 2.0 on ``full_integer``. The answer
names the variant explained (``explained_variant``); its label can, rarely, differ from the one
the quantized variant predicts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from truthwatch.card import ModelCard
from truthwatch.explain import (
    COMPLETENESS_TOLERANCE,
    DEFAULT_STEPS,
    integrated_gradients,
)
from truthwatch.records import PROBABILITY_DIGITS
from truthwatch.runtime import DEFAULT_VARIANT, ModelRuntime, load_runtime
from truthwatch.serving import (
    InferenceService,
    PredictRequest,
    check_model_output,
    request_ids,
    request_rows,
)

METHOD = "integrated_gradients"
BASELINE = "zeros"
ATTRIBUTION_DIGITS = 6
"""Decimals kept per attribution; 64 roundings move a sum by 3.2e-5 at most, far inside the tolerance."""


class Explanation(BaseModel):
    """The attributions of one row."""

    inference_id: str
    label: str = Field(description="The predicted class, whose probability is explained.")
    probability: float = Field(description="f(x): the predicted class's probability at the row.")
    baseline_probability: float = Field(description="f(0): the same class's probability at the baseline.")
    attributions: list[float] = Field(
        description="One per feature, in the model card's feature order; they sum to f(x) - f(0)."
    )
    attributions_grid: list[list[float]] | None = Field(
        description="The attributions as an image (8 rows of 8 for the digits); null for other inputs."
    )
    completeness_gap: float = Field(
        description="|sum(attributions) - (probability - baseline_probability)|, from the values above."
    )
    exceeds_tolerance: bool = Field(
        description=(
            "True when completeness_gap is over completeness_tolerance: the attributions do not add "
            "up, typically for a row far outside the trained range, where the model saturates between "
            "path points."
        )
    )


class ExplainResponse(BaseModel):
    """Body of a successful ``POST /explain``."""

    model_name: str
    model_version: str
    class_names: list[str]
    method: str = Field(description="integrated_gradients, with central-difference gradients.")
    baseline: str = Field(description="The reference input: zeros (a blank image for the digits).")
    steps: int = Field(description="Path points of the Riemann sum.")
    completeness_tolerance: float = Field(
        description="Bound on |sum(attributions) - (probability - baseline_probability)|."
    )
    explained_variant: str = Field(
        description="The model explained: float32 also when a quantized variant serves predictions."
    )
    explanations: list[Explanation]


@dataclass(frozen=True)
class ExplainOutcome:
    """What one ``POST /explain`` produced."""

    body: dict[str, Any]
    rows: int
    latency_ms: float
    over_tolerance: int = 0
    """Explanations whose completeness gap exceeds the tolerance."""


def grid_shape(card: ModelCard) -> tuple[int, int] | None:
    """The image shape attributions are also given in: the input's own 2-D shape, 8x8 for 64 features.

    The digits card declares its input flat (``[64]``), the pixels of an 8x8 image row by row.
    """
    if len(card.input.shape) == 2:
        height, width = card.input.shape
        return height, width
    if card.n_features == 64:
        return 8, 8
    return None


def explain(service: InferenceService, request: PredictRequest) -> ExplainOutcome:
    """Attributions for every row of a validated ``/explain`` body.

    Raises
    ------
    RequestError
        The same 4xx as ``/predict`` for an unusable body or ids; 413 ``too_many_rows`` past
        ``MAX_EXPLAIN_ROWS``.
        400 ``value_out_of_range`` too when rows outside the trained range make the model's
        output or their attributions non-finite (see :func:`~truthwatch.serving.check_model_output`).
    ModelOutputError
        When rows within the trained range get a non-finite probability or attribution.
    """
    started = time.perf_counter()
    card = service.card
    # Each row costs 2 * steps * n_features model evaluations, hence a limit of its own.
    rows = request_rows(request, card, service.settings.max_explain_rows, "MAX_EXPLAIN_ROWS")
    ids = request_ids(request, len(rows))
    runtime = explaining_runtime(service)
    predict = runtime.predict_proba

    with_baseline = np.vstack([rows, np.zeros_like(rows[:1])])
    proba = np.asarray(predict(with_baseline), dtype=np.float64)
    if not np.isfinite(proba).all():
        check_model_output(proba, with_baseline, card)
    targets = proba[:-1].argmax(axis=1).tolist()
    baseline = proba[-1]
    attributions_of = _attributions(predict, rows, targets, card)

    shape = grid_shape(card)
    explanations = []
    for key, attributions, target, probability in zip(ids, attributions_of, targets, proba[:-1], strict=True):
        explained = round(float(probability[target]), PROBABILITY_DIGITS)
        reference = round(float(baseline[target]), PROBABILITY_DIGITS)
        gap = completeness_gap(attributions, explained, reference)
        explanations.append(
            {
                "inference_id": key,
                "label": card.class_names[target],
                "probability": explained,
                "baseline_probability": reference,
                "attributions": attributions.tolist(),
                "attributions_grid": None if shape is None else attributions.reshape(shape).tolist(),
                "completeness_gap": gap,
                "exceeds_tolerance": gap > COMPLETENESS_TOLERANCE,
            }
        )
    body = {
        "model_name": card.name,
        "model_version": card.version,
        "class_names": list(card.class_names),
        "method": METHOD,
        "baseline": BASELINE,
        "steps": DEFAULT_STEPS,
        "completeness_tolerance": COMPLETENESS_TOLERANCE,
        "explained_variant": DEFAULT_VARIANT,
        "explanations": explanations,
    }
    over = sum(e["exceeds_tolerance"] for e in explanations)
    return ExplainOutcome(body, len(rows), (time.perf_counter() - started) * 1000.0, over)


def completeness_gap(
    attributions: npt.NDArray[np.float64], probability: float, baseline_probability: float
) -> float:
    """How far the attributions miss ``probability - baseline_probability``, rounded as answered.

    Computed from the values the answer holds, so a caller who sums them gets the same figure.
    """
    gap = abs(math.fsum(attributions.tolist()) - (probability - baseline_probability))
    return round(gap, ATTRIBUTION_DIGITS)


_float_runtimes: dict[Path, ModelRuntime] = {}


def explaining_runtime(service: InferenceService) -> ModelRuntime:
    """The float32 model of the served version: the served runtime itself, unless it is quantized.

    The TensorFlow back end always serves the float32 Keras model. A quantized LiteRT variant
    gets the float32 flatbuffer of its folder, loaded (and checksum-verified) on the first
    explanation and kept.
    """
    if service.settings.variant == DEFAULT_VARIANT:
        return service.runtime
    folder = service.runtime.folder
    if folder not in _float_runtimes:
        _float_runtimes[folder] = load_runtime(folder, "litert", DEFAULT_VARIANT)
    return _float_runtimes[folder]


def _attributions(
    predict: Any, rows: npt.NDArray[np.float32], targets: list[int], card: ModelCard
) -> npt.NDArray[np.float64]:
    attributions = np.stack(
        [integrated_gradients(predict, row, t) for row, t in zip(rows, targets, strict=True)]
    )
    if not np.isfinite(attributions).all():
        check_model_output(attributions, rows, card)
    rounded: npt.NDArray[np.float64] = attributions.round(ATTRIBUTION_DIGITS)
    return rounded
