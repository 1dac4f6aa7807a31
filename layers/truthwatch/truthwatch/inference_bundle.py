"""Bundle the exported model into the inference image's build context.

The image's Docker build context is the repository root, and the Dockerfile copies the model from
one fixed path, :data:`BUNDLE_DIR`, which is git-ignored: ``make model-bundle`` (this module)
fills it from the newest export before ``sam build`` and before the container contract test.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from truthwatch.card import CARD_FILE, read_card
from truthwatch.registry import resolve_model_dir
from truthwatch.runtime import verify_file

logger = logging.getLogger(__name__)

BUNDLE_DIR = Path("functions/inference/model")
DEFAULT_SOURCE = Path("artifacts/models/digits")


def bundle_model(source: Path, target: Path = BUNDLE_DIR) -> Path:
    """Copy one exported version (``source`` or the one its ``LATEST`` names) flat into ``target``.

    Every file the card lists is checked against its checksum first, so a corrupt export never
    reaches an image. ``target`` is emptied first, so it never mixes two versions.

    Raises
    ------
    ModelLoadError
        When the export is missing, or a file is missing or corrupt.
    """
    folder = resolve_model_dir(source)
    card = read_card(folder)
    files = [verify_file(folder, card, name) for name in sorted(card.files)]

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in [folder / CARD_FILE, *files]:
        shutil.copy2(path, target / path.name)
    logger.debug("model bundled", extra={"model_version": card.version, "target": str(target)})
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m truthwatch.inference_bundle [SOURCE] [--target DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--target", type=Path, default=BUNDLE_DIR)
    args = parser.parse_args(argv)
    target = bundle_model(args.source, args.target)
    version = read_card(target).version
    sys.stdout.write(f"bundled model version {version} into {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
