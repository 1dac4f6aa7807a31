"""The truthwatch command line on a real export."""

import shutil
from pathlib import Path

import pytest

from truthwatch.cli import main
from truthwatch.training import ExportResult

pytestmark = pytest.mark.slow


@pytest.fixture()
def artifacts(exported_model: ExportResult, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts" / "models" / "digits"
    shutil.copytree(exported_model.folder.parent, root)
    return tmp_path / "artifacts"


def test_evaluate_prints_accuracy_from_the_runtime(artifacts: Path, exported_model: ExportResult, capsys):
    assert main(["--artifacts", str(artifacts), "evaluate"]) == 0

    out = capsys.readouterr().out
    assert f"accuracy        {exported_model.card.heldout_metrics.accuracy:.4f}" in out
    assert out.count("\n    ") == 10  # one recall line per digit


def test_models_lists_versions_with_metrics_and_marks_latest(
    artifacts: Path, exported_model: ExportResult, capsys
):
    assert main(["--artifacts", str(artifacts), "models"]) == 0

    out = capsys.readouterr().out
    assert f"*{exported_model.card.version}" in out
    assert f"{exported_model.card.heldout_metrics.accuracy:.4f}" in out
    assert "dynamic_range" in out


def test_train_if_missing_does_not_retrain(artifacts: Path, capsys):
    assert main(["--artifacts", str(artifacts), "train", "--if-missing"]) == 0

    assert "model already exported" in capsys.readouterr().out


def test_missing_model_is_a_clear_error_and_exit_2(tmp_path: Path, capsys):
    assert main(["--artifacts", str(tmp_path), "evaluate"]) == 2

    assert "truthwatch train" in capsys.readouterr().err
