"""The inference function's per-request metrics, as Powertools EMF lines.

Every metric carries the two dimension sets of docs/contracts.md, ``(ModelName, ModelVersion)``
and ``(ModelName)``, in one EMF line. ``predictions`` adds ``PredictedClass``, and an EMF line
has one value per dimension, so each predicted class gets a line of its own.

The providers are built with ``service=""``: Powertools otherwise adds a ``service`` dimension
to the first set (from ``POWERTOOLS_SERVICE_NAME``), and the alarms and dashboard look the
metrics up by the contract's dimensions exactly.
"""

from __future__ import annotations

from functools import cache
from typing import TypeAlias

from aws_lambda_powertools.metrics import Metrics
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from truthwatch.card import ModelCard
from truthwatch.serving import PredictOutcome
from truthwatch.telemetry import (
    CAPTURE_FAILURES,
    CLASS_DIMENSION,
    CLIENT_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_ROWS,
    MEAN_CONFIDENCE,
    MODEL_NAME_DIMENSION,
    MODEL_VERSION_DIMENSION,
    NAMESPACE,
    PREDICTIONS,
    MetricSpec,
)

MetricSink: TypeAlias = Metrics | AmazonCloudWatchEMFProvider


def add_model_dimensions(metrics: MetricSink, card: ModelCard) -> None:
    """Give ``metrics`` the per-version set and the per-model set."""
    metrics.add_dimension(MODEL_NAME_DIMENSION, card.name)
    metrics.add_dimension(MODEL_VERSION_DIMENSION, card.version)
    metrics.add_dimensions(**{MODEL_NAME_DIMENSION: card.name})


def _add(metrics: MetricSink, spec: MetricSpec, value: float) -> None:
    metrics.add_metric(name=spec.name, unit=spec.unit, value=value)


def record_prediction(metrics: MetricSink, card: ModelCard, outcome: PredictOutcome) -> None:
    """Add one request's latency, rows, mean confidence and capture failures to ``metrics``.

    The per-class counts are flushed at once, one EMF line per predicted class; ``metrics``
    itself is flushed by the handler's ``log_metrics``.
    """
    add_model_dimensions(metrics, card)
    _add(metrics, INFERENCE_LATENCY, outcome.latency_ms)
    _add(metrics, INFERENCE_ROWS, outcome.rows)
    _add(metrics, MEAN_CONFIDENCE, outcome.mean_confidence)
    _add(metrics, CAPTURE_FAILURES, len(outcome.lost))

    per_class = _per_class_provider()
    for class_name, count in outcome.class_counts.items():
        per_class.add_dimension(MODEL_NAME_DIMENSION, card.name)
        per_class.add_dimension(MODEL_VERSION_DIMENSION, card.version)
        per_class.add_dimension(CLASS_DIMENSION, class_name)
        per_class.add_dimensions(**{MODEL_NAME_DIMENSION: card.name, CLASS_DIMENSION: class_name})
        _add(per_class, PREDICTIONS, count)
        per_class.flush_metrics()


@cache
def _per_class_provider() -> AmazonCloudWatchEMFProvider:
    # One provider, reused: each flush clears its metrics and dimensions, and building one
    # costs about as much as the rest of a one-row request's metrics.
    return AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service="")


def record_client_error(metrics: MetricSink, card: ModelCard | None) -> None:
    """Count one refused request (without model dimensions when the model never loaded)."""
    if card is not None:
        add_model_dimensions(metrics, card)
    _add(metrics, CLIENT_ERRORS, 1)
