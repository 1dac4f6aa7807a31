"""Where exported models live: ``<root>/<model name>/<version>/`` and a ``LATEST`` pointer.

The layout of the artifacts folder::

    artifacts/
      models/digits/LATEST             # text: the newest exported version
      models/digits/3c1db9196db7/      # model.keras, model.tflite, model.json
      tensorboard/digits/3c1db9196db7/ # the training run's event files
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from truthwatch.card import CARD_FILE
from truthwatch.errors import ModelLoadError

LATEST_FILE = "LATEST"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model_dir(path: Path) -> Path:
    """Turn a version folder, or a model folder holding ``LATEST``, into a version folder.

    Raises
    ------
    ModelLoadError
        When ``path`` is neither, or ``LATEST`` names a version that is not there.
    """
    if (path / CARD_FILE).is_file():
        return path

    pointer = path / LATEST_FILE
    if pointer.is_file():
        version = pointer.read_text(encoding="utf-8").strip()
        target = path / version
        if not (target / CARD_FILE).is_file():
            raise ModelLoadError(
                pointer, f"names version {version!r}, but {target / CARD_FILE} does not exist"
            )
        return target

    if not path.exists():
        raise ModelLoadError(path, "no such folder; export a model with `truthwatch train`")
    raise ModelLoadError(
        path, f"holds neither {CARD_FILE} nor {LATEST_FILE}; is it an exported model folder?"
    )


def list_versions(model_root: Path) -> list[Path]:
    """Every exported version folder under ``model_root`` (a ``<root>/<name>`` folder), oldest first."""
    if not model_root.is_dir():
        return []
    folders = [p for p in model_root.iterdir() if (p / CARD_FILE).is_file()]
    return sorted(folders, key=lambda p: (p / CARD_FILE).stat().st_mtime)
