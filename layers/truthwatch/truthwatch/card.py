"""The model card: everything a served model says about itself, kept as ``model.json``.

The card sits beside the model files in every exported folder. Serving reads the input shape and
class names from it, capture bins inputs with its baseline histograms, and the metrics function
measures drift against the same baseline. Values are validated on load, and no field may hold NaN
or infinity, so the card always serialises to strict JSON.

Examples
--------
>>> card = read_card(resolve_model_dir(Path("artifacts/models/digits")))  # doctest: +SKIP
>>> card.input.shape, card.class_names[:3]  # doctest: +SKIP
((64,), ('0', '1', '2'))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from truthwatch.errors import ModelLoadError

CARD_FILE = "model.json"
CARD_SCHEMA_VERSION = 1

Proportion = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    """Base of every card section: frozen, no unknown fields, no NaN or infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class InputSpec(_Strict):
    """What one row of input looks like."""

    shape: tuple[int, ...] = Field(description="Shape of one row, without the batch axis.")
    dtype: str = "float32"
    feature_names: tuple[str, ...]
    value_range: tuple[float, float] = Field(description="Smallest and largest value seen in training.")

    @property
    def n_features(self) -> int:
        """Number of numbers in one flattened row."""
        size = 1
        for dim in self.shape:
            size *= dim
        return size

    @model_validator(mode="after")
    def _names_match_shape(self) -> InputSpec:
        if len(self.feature_names) != self.n_features:
            raise ValueError(
                f"input has {self.n_features} features by its shape {list(self.shape)} "
                f"but {len(self.feature_names)} feature names"
            )
        return self


class TrainingData(_Strict):
    """Where the training data came from, and a fingerprint that proves which rows they were."""

    source: str
    rows: int
    train_rows: int
    heldout_rows: int
    heldout_fraction: float
    seed: int
    fingerprint: str = Field(description="sha256 of the full data set's features and labels.")


class HeldoutMetrics(_Strict):
    """Quality measured on the held-out split at export time."""

    rows: int
    accuracy: Proportion
    precision_macro: Proportion
    recall_macro: Proportion
    f1_macro: Proportion
    recall_per_class: dict[str, Proportion]


class FeatureBaseline(_Strict):
    """Histogram of one feature over the training rows.

    ``bin_edges`` are the inner cut points: a value ``x`` falls in bin
    ``searchsorted(bin_edges, x, side="right")``, so the first and last bins are open-ended and
    ``len(proportions) == len(bin_edges) + 1``. Open ends keep infinity out of the JSON.
    """

    name: str
    bin_edges: tuple[float, ...]
    proportions: tuple[Proportion, ...]

    @model_validator(mode="after")
    def _consistent(self) -> FeatureBaseline:
        if len(self.proportions) != len(self.bin_edges) + 1:
            raise ValueError(
                f"feature {self.name!r}: {len(self.bin_edges)} inner edges need "
                f"{len(self.bin_edges) + 1} proportions, got {len(self.proportions)}"
            )
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError(f"feature {self.name!r}: bin edges must increase strictly")
        return self


class Baseline(_Strict):
    """The reference distributions that drift is measured against."""

    features: tuple[FeatureBaseline, ...]
    class_priors: tuple[Proportion, ...] = Field(description="Share of each class in the training labels.")


class ModelFile(_Strict):
    """One file of the exported folder, with the checksum that guards it against corruption."""

    sha256: str
    bytes: int


class ModelVariant(_Strict):
    """One TFLite flatbuffer of the model, with what it costs and what it keeps."""

    file: str
    quantization: str = Field(description="none, dynamic_range or full_integer.")
    bytes: int
    heldout_accuracy: Proportion
    exported: bool = Field(description="False when the variant lost too much accuracy to ship.")
    note: str = ""


class Attributions(_Strict):
    """Mean per-feature attributions of the held-out rows, by predicted class.

    What the model looks at when it predicts each class: reports draw them as a heat map beside the
    confusion matrix. Computed at export with :func:`truthwatch.explain.integrated_gradients`.
    """

    method: str
    baseline: str
    by_class: dict[str, tuple[float, ...]]
    rows_by_class: dict[str, int]


class ModelCard(_Strict):
    """The contents of ``model.json``."""

    schema_version: int = CARD_SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: str = Field(
        pattern=r"^[0-9a-f]{12}$", description="Content hash of the architecture, weights and TFLite model."
    )
    created: str = Field(description="UTC time of export, ISO 8601.")
    framework: dict[str, str]
    preprocessing: str
    input: InputSpec
    class_names: tuple[str, ...]
    training_data: TrainingData
    heldout_metrics: HeldoutMetrics
    baseline: Baseline
    files: dict[str, ModelFile]
    attributions: Attributions | None = None
    variants: dict[str, ModelVariant] = Field(
        default_factory=dict, description="TFLite variants by name: float32, dynamic_range, full_integer."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if len(self.baseline.features) != self.input.n_features:
            raise ValueError(
                f"baseline has {len(self.baseline.features)} features, input has {self.input.n_features}"
            )
        if len(self.baseline.class_priors) != len(self.class_names):
            raise ValueError(
                f"baseline has {len(self.baseline.class_priors)} class priors "
                f"for {len(self.class_names)} classes"
            )
        return self

    @property
    def n_features(self) -> int:
        """Number of numbers in one flattened input row."""
        return self.input.n_features

    def public(self) -> dict[str, object]:
        """The card without internals (file checksums), as served by ``GET /model``."""
        return self.model_dump(mode="json", exclude={"files"})

    def to_json(self) -> str:
        """Serialise to the strict, indented JSON written as ``model.json``."""
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"


def read_card(folder: Path) -> ModelCard:
    """Read and validate ``model.json`` in ``folder``.

    Raises
    ------
    ModelLoadError
        When the file is missing, is not JSON, or misses or mistypes a field; the message names the
        file and the first fields at fault.
    """
    path = folder / CARD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelLoadError(
            path, "model card is missing; export the model with `truthwatch train`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(path, f"model card cannot be read ({exc})") from None

    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()[:3]
        )
        raise ModelLoadError(path, f"model card is not valid ({problems})") from None
