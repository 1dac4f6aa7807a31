"""Clean virtual environments holding exactly one function's pinned requirements.

A deployed function has only what its requirements file installs (plus, for the zip functions,
the shared layer). These venvs make the tests see the same: an import the file forgot fails here,
not in Lambda. Each venv is cached under ``.venv-contract/`` on a hash of its requirements file and
interpreter, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_PYTHON = "3.12.1"


def interpreter() -> list[str]:
    """python3.12 (the Lambda runtime) when pyenv or the PATH has it, else this interpreter."""
    env = {**os.environ, "PYENV_VERSION": LAMBDA_PYTHON}
    found = shutil.which("python3.12")
    if found and subprocess.run([found, "-c", "pass"], env=env, capture_output=True).returncode == 0:
        return [found]
    return [sys.executable]


def clean_venv(requirements: Path) -> Path:
    """The python of a venv holding only ``requirements`` (``--no-deps``, then ``pip check``)."""
    command = interpreter()
    key = hashlib.sha256(requirements.read_bytes() + command[0].encode()).hexdigest()[:16]
    venv = ROOT / ".venv-contract" / f"{requirements.parent.name}-{requirements.stem}-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(
        [*command, "-m", "venv", str(venv)], check=True, env={**os.environ, "PYENV_VERSION": LAMBDA_PYTHON}
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--requirement", str(requirements)],
        check=True,
    )
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    (venv / ".complete").touch()
    return python
