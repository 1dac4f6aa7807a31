"""The model runtime: both back ends, input checks, and clear errors for broken folders."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from truthwatch.dataset import load_digits_split
from truthwatch.errors import InputShapeError, ModelLoadError
from truthwatch.runtime import load_runtime

pytestmark = pytest.mark.slow


@pytest.fixture()
def broken_copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / model_dir.name
    shutil.copytree(model_dir, target)
    return target


def test_both_back_ends_agree_on_the_whole_heldout_set(model_dir: Path):
    split = load_digits_split()
    litert = load_runtime(model_dir, "litert")
    tensorflow = load_runtime(model_dir, "tensorflow")

    lite_proba = litert.predict_proba(split.x_heldout)
    tf_proba = tensorflow.predict_proba(split.x_heldout)

    assert lite_proba.shape == (360, 10)
    assert np.abs(lite_proba - tf_proba).max() < 1e-5
    assert (lite_proba.argmax(1) == split.y_heldout).mean() >= 0.95


def test_litert_answers_single_rows_and_batches_alike(model_dir: Path):
    split = load_digits_split()
    runtime = load_runtime(model_dir)

    batch = runtime.predict_proba(split.x_heldout[:5])
    singles = np.vstack([runtime.predict_proba(row[None, :]) for row in split.x_heldout[:5]])

    assert np.allclose(batch, singles, atol=1e-6)
    assert np.allclose(batch.sum(axis=1), 1.0, atol=1e-5)


def test_importing_the_litert_back_end_does_not_import_tensorflow(model_dir: Path):
    code = (
        "import sys; from pathlib import Path; from truthwatch.runtime import load_runtime; "
        f"r = load_runtime(Path({str(model_dir)!r})); r.predict_proba([[0.0] * 64]); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_wrong_row_length_names_the_expected_shape(model_dir: Path):
    runtime = load_runtime(model_dir)

    with pytest.raises(InputShapeError, match=r"\(n >= 1, 64\), got \(1, 63\)"):
        runtime.predict_proba([[0.0] * 63])
    with pytest.raises(InputShapeError):
        runtime.predict_proba(np.zeros((0, 64)))


@pytest.mark.parametrize("name", ["model.tflite", "model.keras"])
def test_missing_model_file_is_named(broken_copy: Path, name: str):
    (broken_copy / name).unlink()
    backend = "litert" if name.endswith("tflite") else "tensorflow"

    with pytest.raises(ModelLoadError, match=rf"{name}: model file is missing"):
        load_runtime(broken_copy, backend)


def test_corrupt_flatbuffer_is_named(broken_copy: Path):
    path = broken_copy / "model.tflite"
    data = bytearray(path.read_bytes())
    data[100:110] = b"\x00" * 10
    path.write_bytes(bytes(data))

    with pytest.raises(ModelLoadError, match=r"model\.tflite: model file is corrupt"):
        load_runtime(broken_copy)


def test_truncated_file_is_named(broken_copy: Path):
    path = broken_copy / "model.keras"
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(ModelLoadError, match=r"model\.keras: model file is corrupt: 100 bytes"):
        load_runtime(broken_copy, "tensorflow")


def test_corrupt_card_is_named(broken_copy: Path):
    (broken_copy / "model.json").write_text('{"name": "digits"')

    with pytest.raises(ModelLoadError, match=r"model\.json: model card is not valid"):
        load_runtime(broken_copy)


def test_missing_folder_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="truthwatch train"):
        load_runtime(tmp_path / "nowhere")


def test_unknown_back_end_is_refused(model_dir: Path):
    with pytest.raises(ValueError, match="unknown back end 'onnx'"):
        load_runtime(model_dir, "onnx")  # type: ignore[arg-type]
