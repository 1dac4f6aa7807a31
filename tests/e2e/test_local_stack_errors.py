"""The stack refuses to start, with a clear message and exit code, when it cannot do its job."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from infra.local.__main__ import main
from infra.local.stack import LocalStack, StackConfig, StackError

pytestmark = pytest.mark.e2e


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    stack = LocalStack(StackConfig(api_port=0, moto_port=0, model_dir=tmp_path / "none", state_dir=tmp_path))

    with pytest.raises(StackError, match="no exported model"):
        stack.start()


@pytest.mark.slow  # the session's model is trained first
def test_port_in_use_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        stack = LocalStack(StackConfig(api_port=taken, moto_port=0, model_dir=model_dir, state_dir=tmp_path))

        with pytest.raises(StackError, match=f"port {taken} .* in use"):
            stack.start()


def test_serve_exits_non_zero_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["serve", "--port", "0", "--moto-port", "0", "--model-dir", str(tmp_path / "none")])

    assert status == 2
    assert "no exported model" in capsys.readouterr().err


@pytest.mark.slow  # the session's model is trained first
def test_damaged_model_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_dir, models / model_dir.name)
    (models / "LATEST").write_text(model_dir.name, encoding="utf-8")
    (models / model_dir.name / "model.tflite").write_bytes(b"not a flatbuffer")
    stack = LocalStack(StackConfig(api_port=0, moto_port=0, model_dir=models, state_dir=tmp_path))

    with pytest.raises(StackError, match=r"cannot be served .*model\.tflite"):
        stack.start()
