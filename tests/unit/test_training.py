"""Training and export on the real digits (slow: a real Keras fit)."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from truthwatch.card import ModelCard, read_card
from truthwatch.registry import LATEST_FILE, resolve_model_dir, sha256_file
from truthwatch.training import ExportResult, TrainConfig, train_and_export

pytestmark = pytest.mark.slow


def test_heldout_accuracy_is_at_least_095(exported_model: ExportResult):
    metrics = exported_model.card.heldout_metrics

    assert metrics.rows == 360
    assert metrics.accuracy >= 0.95
    assert metrics.f1_macro >= 0.95
    assert set(metrics.recall_per_class) == set("0123456789")


def test_export_holds_both_models_and_a_complete_card(exported_model: ExportResult):
    folder = exported_model.folder
    raw = json.loads((folder / "model.json").read_text())
    card = read_card(folder)

    assert folder.name == card.version
    shipped = {v.file for v in card.variants.values() if v.exported}
    assert {p.name for p in folder.iterdir()} == {"model.keras", "model.json", *shipped}
    assert "model.tflite" in shipped
    assert set(raw) == set(ModelCard.model_fields)
    assert card.input.shape == (64,)
    assert len(card.input.feature_names) == 64
    assert card.input.value_range == (0.0, 16.0)
    assert card.class_names == tuple("0123456789")
    assert card.training_data.rows == 1797
    assert card.training_data.source == "sklearn.datasets.load_digits"
    assert len(card.training_data.fingerprint) == 64
    assert len(card.baseline.features) == 64
    assert sum(card.baseline.class_priors) == pytest.approx(1.0)
    for feature in card.baseline.features:
        assert sum(feature.proportions) == pytest.approx(1.0)
    for name, described in card.files.items():
        assert described.sha256 == sha256_file(folder / name)
        assert described.bytes == (folder / name).stat().st_size


def test_latest_points_at_the_export(exported_model: ExportResult):
    model_root = exported_model.folder.parent

    assert (model_root / LATEST_FILE).read_text().strip() == exported_model.card.version
    assert resolve_model_dir(model_root) == exported_model.folder


def test_training_leaves_tensorboard_event_files(exported_model: ExportResult):
    events = list(exported_model.tensorboard_dir.rglob("events.out.tfevents.*"))

    assert {p.parent.name for p in events} == {"train", "validation"}
    accumulator = EventAccumulator(
        str(exported_model.tensorboard_dir / "train"), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    assert {"epoch_loss", "epoch_accuracy"} <= set(accumulator.Tags()["tensors"])
    assert len(accumulator.Tensors("epoch_loss")) == TrainConfig().epochs


def test_same_seed_gives_same_version_and_another_seed_does_not(tmp_path: Path):
    quick = TrainConfig(epochs=2)

    first = train_and_export(tmp_path / "a", quick)
    second = train_and_export(tmp_path / "b", quick)
    other = train_and_export(tmp_path / "c", TrainConfig(epochs=2, seed=7))

    assert first.card.version == second.card.version
    assert (first.folder / "model.tflite").read_bytes() == (second.folder / "model.tflite").read_bytes()
    assert other.card.version != first.card.version
