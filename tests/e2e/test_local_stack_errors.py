"""The stack refuses to start, with a clear message and exit code, when it cannot do its job."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
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


@pytest.mark.slow  # the session's model is trained first
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_started_in_the_background_stops_cleanly_on_a_signal(
    tmp_path: Path, model_dir: Path, stop: signal.Signals
) -> None:
    # A shell starts a background job (`make serve &`) with SIGINT ignored, and the ignoring
    # survives exec; serve must stop on it anyway.
    ignoring = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.executable, [sys.executable, '-m', 'infra.local', *sys.argv[1:]])"
    )
    command = [sys.executable, "-c", ignoring, "serve", "--port", "0", "--moto-port", "0"]
    command += ["--model-dir", str(model_dir.parent), "--state-dir", str(tmp_path)]
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert serve.stdout is not None
    try:
        lines = []
        for line in serve.stdout:
            lines.append(line)
            if "ready; Ctrl-C stops everything" in line:
                break
        assert any("ready" in line for line in lines), "".join(lines)

        serve.send_signal(stop)
        rest, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
    assert serve.returncode == 0, rest
    assert "stopping" in rest and "stopped after 0 requests and 0 emails" in rest
