"""TFLite variants of a trained Keras model: float32, dynamic-range and full-integer quantized.

Dynamic-range quantization stores weights as int8 and keeps float activations: about a quarter of
the size, no calibration data. Full-integer quantization also runs activations in int8, calibrated
on training rows; inputs and outputs stay float32 so callers feed the same rows. A variant ships
only when its held-out accuracy stays within :data:`MAX_ACCURACY_LOSS` of the Keras model's.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

MAX_ACCURACY_LOSS = 0.01
"""Largest held-out accuracy a quantized variant may lose against the Keras model (one point)."""
CALIBRATION_ROWS = 300
VARIANT_FILES = {
    "float32": "model.tflite",
    "dynamic_range": "model.dynamic_range.tflite",
    "full_integer": "model.full_integer.tflite",
}


@dataclass(frozen=True)
class Flatbuffer:
    """One converted variant and its held-out accuracy."""

    name: str
    file: str
    quantization: str
    content: bytes
    heldout_accuracy: float


def convert(model: Any, quantization: str, calibration: npt.NDArray[np.float32] | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer with the given quantization.

    Parameters
    ----------
    model
        A built Keras model with a ``(None, n_features)`` float input.
    quantization
        ``none``, ``dynamic_range`` or ``full_integer``.
    calibration
        Rows that calibrate activation ranges; required for ``full_integer``.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization in ("dynamic_range", "full_integer"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "full_integer":
        if calibration is None:
            raise ValueError("full-integer quantization needs calibration rows")
        rows = calibration

        def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
            for row in rows:
                yield [row[None, :].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    # The converter prints the intermediate SavedModel's signature to stdout; keep it in the debug log.
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        flatbuffer: bytes = converter.convert()
    logger.debug(
        "tflite converter output", extra={"quantization": quantization, "output": chatter.getvalue()}
    )
    return flatbuffer


def flatbuffer_accuracy(content: bytes, x: npt.NDArray[np.float32], y: npt.NDArray[np.integer]) -> float:
    """Held-out accuracy of a flatbuffer run by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x.astype(np.float32))
    interpreter.invoke()
    proba = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float((proba.argmax(axis=1) == y).mean())


def build_variants(
    model: Any,
    calibration: npt.NDArray[np.float32],
    x_heldout: npt.NDArray[np.float32],
    y_heldout: npt.NDArray[np.integer],
) -> list[Flatbuffer]:
    """Convert and score every variant, float32 first."""
    quantizations = {"float32": "none", "dynamic_range": "dynamic_range", "full_integer": "full_integer"}
    variants = []
    for name, quantization in quantizations.items():
        content = convert(model, quantization, calibration[:CALIBRATION_ROWS])
        accuracy = flatbuffer_accuracy(content, x_heldout, y_heldout)
        variants.append(Flatbuffer(name, VARIANT_FILES[name], quantization, content, accuracy))
    return variants
