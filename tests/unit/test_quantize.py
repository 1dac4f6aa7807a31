"""Quantized TFLite variants: recorded in the card, within one accuracy point, servable."""

from pathlib import Path

import numpy as np
import pytest

from truthwatch.dataset import load_digits_split
from truthwatch.errors import ModelLoadError
from truthwatch.quantize import MAX_ACCURACY_LOSS
from truthwatch.runtime import load_runtime
from truthwatch.training import ExportResult

pytestmark = pytest.mark.slow


def test_card_records_size_and_accuracy_of_every_variant(exported_model: ExportResult):
    variants = exported_model.card.variants
    folder = exported_model.folder

    assert set(variants) == {"float32", "dynamic_range", "full_integer"}
    for variant in variants.values():
        if variant.exported:
            assert (folder / variant.file).stat().st_size == variant.bytes
        else:
            assert not (folder / variant.file).exists()
            assert "not shipped" in variant.note
    assert variants["dynamic_range"].bytes < variants["float32"].bytes / 2


def test_quantized_variants_lose_at_most_one_point(exported_model: ExportResult, model_dir: Path):
    split = load_digits_split()
    reference = exported_model.card.heldout_metrics.accuracy

    for name, variant in exported_model.card.variants.items():
        if not variant.exported:
            continue
        runtime = load_runtime(model_dir, "litert", variant=name)
        served = float((runtime.predict(split.x_heldout)[0] == split.y_heldout).mean())
        assert served == pytest.approx(variant.heldout_accuracy)
        assert reference - served <= MAX_ACCURACY_LOSS


def test_dynamic_range_variant_stays_close_to_float(model_dir: Path):
    split = load_digits_split()
    exact = load_runtime(model_dir).predict_proba(split.x_heldout)
    quantized = load_runtime(model_dir, variant="dynamic_range").predict_proba(split.x_heldout)

    assert np.abs(exact - quantized).max() < 0.1
    assert (exact.argmax(1) == quantized.argmax(1)).mean() > 0.98


def test_unknown_variant_is_refused_with_the_known_ones(model_dir: Path):
    with pytest.raises(ModelLoadError, match=r"no TFLite variant 'int4'.*dynamic_range"):
        load_runtime(model_dir, variant="int4")
