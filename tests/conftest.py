"""Fixtures shared by every test layer: a trained model, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from truthwatch.training import ExportResult, TrainConfig, train_and_export


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The digits model with the default settings, exported to a temporary artifacts folder."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    return train_and_export(artifacts, TrainConfig())


@pytest.fixture(scope="session")
def model_dir(exported_model: ExportResult) -> Path:
    """The version folder of :func:`exported_model`."""
    return exported_model.folder
