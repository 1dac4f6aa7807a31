"""Every CloudWatch metric truthwatch publishes: one namespace, its names, units and dimensions.

The inference handler (EMF), the metrics function (PutMetricData), the alarms in ``template.yaml``
and the tests that check the template all take names from here, so a metric cannot be renamed in
one place and silently left behind in another.

Names follow scikit-learn's convention: ``*_score`` is higher-is-better, ``*_error`` and
``*_loss`` are lower-is-better; counts and drift values say what they count or measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE = "Truthwatch"
MODEL_NAME_DIMENSION = "ModelName"
MODEL_VERSION_DIMENSION = "ModelVersion"
MODEL_DIMENSIONS = (MODEL_NAME_DIMENSION, MODEL_VERSION_DIMENSION)
CLASS_DIMENSION = "PredictedClass"
"""Extra dimension of :data:`PREDICTIONS`, one series per predicted class."""

Unit = Literal["Count", "Milliseconds", "None", "Percent"]
Publisher = Literal["inference", "metrics"]


@dataclass(frozen=True)
class MetricSpec:
    """One published metric."""

    name: str
    unit: Unit
    publisher: Publisher
    description: str
    dimensions: tuple[str, ...] = MODEL_DIMENSIONS


def _spec(name: str, unit: Unit, publisher: Publisher, description: str, **kw: tuple[str, ...]) -> MetricSpec:
    return MetricSpec(name, unit, publisher, description, **kw)


# Published by the inference function, per request, as embedded metric format log lines.
INFERENCE_LATENCY = _spec("inference_latency", "Milliseconds", "inference", "Time to validate and predict.")
INFERENCE_ROWS = _spec("inference_rows", "Count", "inference", "Rows predicted.")
PREDICTIONS = _spec(
    "predictions",
    "Count",
    "inference",
    "Rows predicted as each class.",
    dimensions=(*MODEL_DIMENSIONS, CLASS_DIMENSION),
)
MEAN_CONFIDENCE = _spec("mean_confidence", "None", "inference", "Mean top-class probability of a request.")
CAPTURE_FAILURES = _spec(
    "capture_failures", "Count", "inference", "Prediction records not written to the table (see the log)."
)
CLIENT_ERRORS = _spec("client_errors", "Count", "inference", "Requests refused with a 4xx answer.")

# Published by the metrics function, per label file and model version, at the predictions' hour.
ACCURACY = _spec("accuracy_score", "None", "metrics", "Share of matched rows predicted right.")
BALANCED_ACCURACY = _spec("balanced_accuracy_score", "None", "metrics", "Mean recall over classes.")
PRECISION_MACRO = _spec("precision_macro_score", "None", "metrics", "Unweighted mean precision over classes.")
RECALL_MACRO = _spec("recall_macro_score", "None", "metrics", "Unweighted mean recall over classes.")
F1_MACRO = _spec("f1_macro_score", "None", "metrics", "Unweighted mean F1 over classes.")
F1_WEIGHTED = _spec("f1_weighted_score", "None", "metrics", "Support-weighted mean F1 over classes.")
ROC_AUC = _spec("roc_auc_ovr_score", "None", "metrics", "One-vs-rest ROC AUC from recorded probabilities.")
LOG_LOSS = _spec("log_loss", "None", "metrics", "Cross-entropy of the recorded probabilities.")
CONSTANT_ACCURACY = _spec(
    "constant_accuracy_score", "None", "metrics", "Accuracy of always predicting the most frequent label."
)
FEATURE_PSI_MAX = _spec(
    "feature_psi_max", "None", "metrics", "Largest population stability index over input features."
)
PREDICTION_PSI = _spec(
    "prediction_psi", "None", "metrics", "Population stability index of predicted classes vs class priors."
)
LABELS_READ = _spec("labels_read", "Count", "metrics", "Rows read from label files.")
LABELS_MATCHED = _spec("labels_matched", "Count", "metrics", "Label rows joined to a recorded prediction.")
LABELS_UNKNOWN = _spec("labels_unknown", "Count", "metrics", "Label rows whose inference id is not recorded.")
LABELS_REJECTED = _spec(
    "labels_rejected", "Count", "metrics", "Label rows refused, with reasons in rejected/."
)
LABELS_DUPLICATE = _spec("labels_duplicate", "Count", "metrics", "Label rows overridden by a later row.")

ALL_METRICS: tuple[MetricSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricSpec))
BY_NAME: dict[str, MetricSpec] = {m.name: m for m in ALL_METRICS}
