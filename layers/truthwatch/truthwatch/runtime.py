"""The model runtime: load an exported folder and predict class probabilities for a batch.

Two back ends stand behind one interface:

``litert`` (default)
    Runs ``model.tflite`` with the LiteRT interpreter (``ai-edge-litert``). It imports in about a
    tenth of a second and never imports TensorFlow, which keeps the serving image small and cold
    starts short.
``tensorflow``
    Loads ``model.keras`` and calls it through a compiled ``tf.function`` with a fixed input
    signature (never ``model.predict`` per request, which builds a data pipeline every call).

Both read the same ``model.json`` and verify each model file against the checksum the card
records, so a truncated or corrupt file fails at load time with the file's name.

Examples
--------
>>> runtime = load_runtime(Path("artifacts/models/digits"))  # doctest: +SKIP
>>> runtime.predict_proba(np.zeros((2, 64), dtype=np.float32)).shape  # doctest: +SKIP
(2, 10)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from truthwatch.card import ModelCard, read_card
from truthwatch.errors import InputShapeError, ModelLoadError
from truthwatch.registry import resolve_model_dir, sha256_file

logger = logging.getLogger(__name__)

BackendName = Literal["litert", "tensorflow"]
BACKENDS: tuple[BackendName, ...] = ("litert", "tensorflow")
KERAS_FILE = "model.keras"
DEFAULT_VARIANT = "float32"

FloatArray = npt.NDArray[np.float32]


class Backend(Protocol):
    """What a back end does: a float32 batch ``(n, n_features)`` in, probabilities ``(n, k)`` out."""

    def predict_proba(self, rows: FloatArray) -> FloatArray:
        """Class probabilities for each row."""
        ...


class LiteRTBackend:
    """Runs a TFLite flatbuffer with the LiteRT interpreter.

    The interpreter is resized only when the batch size changes; a lock makes one instance safe to
    share between the threads of a local HTTP server (a Lambda environment runs one at a time).
    """

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(path, f"LiteRT cannot load the flatbuffer ({exc})") from None
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = -1
        self._lock = threading.Lock()

    def predict_proba(self, rows: FloatArray) -> FloatArray:
        """Class probabilities for each row."""
        with self._lock:
            if rows.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, list(rows.shape), strict=False)
                self._interpreter.allocate_tensors()
                self._batch = rows.shape[0]
            self._interpreter.set_tensor(self._input, rows)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output), dtype=np.float32)


class TensorFlowBackend:
    """Runs the Keras model through one compiled function with a fixed, batch-agnostic signature."""

    def __init__(self, path: Path, n_features: int) -> None:
        import keras
        import tensorflow as tf

        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError) as exc:
            raise ModelLoadError(path, f"Keras cannot load the model ({exc})") from None
        signature = [tf.TensorSpec(shape=(None, n_features), dtype=tf.float32)]
        self._call: Any = tf.function(lambda x: model(x, training=False), input_signature=signature)

    def predict_proba(self, rows: FloatArray) -> FloatArray:
        """Class probabilities for each row."""
        return np.asarray(self._call(rows), dtype=np.float32)


class ModelRuntime:
    """A loaded model: its card and a back end, behind input checks.

    Attributes
    ----------
    card
        The model card of the loaded version.
    backend_name
        ``"litert"`` or ``"tensorflow"``.
    folder
        The version folder the model was loaded from.
    """

    def __init__(self, card: ModelCard, backend: Backend, backend_name: BackendName, folder: Path) -> None:
        self.card = card
        self.backend = backend
        self.backend_name = backend_name
        self.folder = folder

    def predict_proba(self, rows: npt.ArrayLike) -> FloatArray:
        """Class probabilities, shape ``(n, n_classes)``, for rows of shape ``(n, n_features)``.

        Raises
        ------
        InputShapeError
            When the batch is empty or a row has the wrong number of features.
        """
        batch = np.asarray(rows, dtype=np.float32)
        expected = self.card.n_features
        if batch.ndim != 2 or batch.shape[0] == 0 or batch.shape[1] != expected:
            raise InputShapeError(f"expected a batch of shape (n >= 1, {expected}), got {tuple(batch.shape)}")
        return self.backend.predict_proba(np.ascontiguousarray(batch))

    def predict(self, rows: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """Predicted class indices and the probabilities they came from."""
        proba = self.predict_proba(rows)
        return proba.argmax(axis=1).astype(np.int64), proba


def verify_file(folder: Path, card: ModelCard, file_name: str) -> Path:
    """Check one model file against the card's checksum and return its path.

    Raises
    ------
    ModelLoadError
        When the card does not list the file, the file is missing, or its bytes differ.
    """
    path = folder / file_name
    expected = card.files.get(file_name)
    if expected is None:
        raise ModelLoadError(folder / "model.json", f"lists no file {file_name!r}")
    if not path.is_file():
        raise ModelLoadError(path, "model file is missing")

    size = path.stat().st_size
    if size != expected.bytes:
        raise ModelLoadError(path, f"model file is corrupt: {size} bytes, the card says {expected.bytes}")
    if sha256_file(path) != expected.sha256:
        raise ModelLoadError(path, "model file is corrupt: its sha256 differs from the card's")
    return path


def variant_file(card: ModelCard, variant: str) -> str:
    """The flatbuffer file of a TFLite variant the card lists as shipped.

    Raises
    ------
    ModelLoadError
        When the card does not list the variant or it was not shipped (with the card's reason).
    """
    if not card.variants and variant == DEFAULT_VARIANT:
        return "model.tflite"
    described = card.variants.get(variant)
    if described is None:
        known = ", ".join(sorted(card.variants)) or "none"
        raise ModelLoadError("model.json", f"lists no TFLite variant {variant!r} (it lists {known})")
    if not described.exported:
        raise ModelLoadError("model.json", f"variant {variant!r} was not shipped ({described.note})")
    return described.file


def load_runtime(path: Path, backend: BackendName = "litert", variant: str = DEFAULT_VARIANT) -> ModelRuntime:
    """Load an exported model for serving.

    Parameters
    ----------
    path
        A version folder (holding ``model.json``) or a model folder holding ``LATEST``.
    backend
        ``"litert"`` (default) or ``"tensorflow"``.
    variant
        With ``litert``: which flatbuffer, ``float32`` (default), ``dynamic_range`` or
        ``full_integer``, as the card's ``variants`` lists them. Ignored by ``tensorflow``.

    Raises
    ------
    ModelLoadError
        When a file is missing, corrupt or unreadable; the message names it.
    ValueError
        When ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown back end {backend!r}; expected one of {', '.join(BACKENDS)}")

    folder = resolve_model_dir(path)
    card = read_card(folder)
    file_name = variant_file(card, variant) if backend == "litert" else KERAS_FILE
    model_file = verify_file(folder, card, file_name)
    engine: Backend = (
        LiteRTBackend(model_file) if backend == "litert" else TensorFlowBackend(model_file, card.n_features)
    )
    logger.debug("model loaded", extra={"model_version": card.version, "backend": backend, "file": file_name})
    return ModelRuntime(card, engine, backend, folder)
