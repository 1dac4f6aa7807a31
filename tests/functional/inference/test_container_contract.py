"""The inference image, checked without Docker: its requirements, its COPY lines and its CMD.

For each back end the image can be built with, a clean virtual environment gets exactly the
requirements files the Dockerfile's RUN line installs for that build argument; the files are laid
out as its COPY and ADD lines say; the CMD handler is imported from that layout in a subprocess
and answers API Gateway events. Everything comes from the Dockerfile (parsed by
:mod:`tests.functional.contract`, never repeated here): a COPY of a path that does not exist, a
requirements file the build does not install, or an import the requirements do not satisfy fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.events import load_event
from tests.functional.contract import (
    LAMBDA_WORKDIR,
    DockerfileError,
    Image,
    clean_venv,
    installed_requirements,
    read_dockerfile,
)
from truthwatch.inference_bundle import bundle_model
from truthwatch.runtime import BACKENDS

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "functions" / "inference" / "Dockerfile"
INVOKE = """
import json, sys, importlib
module, function = sys.argv[1].rsplit(".", 1)
handler = getattr(importlib.import_module(module), function)
class Context:
    function_name = 'truthwatch-InferenceFunction'; memory_limit_in_mb = 1024
    invoked_function_arn = 'arn:aws:lambda:eu-west-1:1:function:f'; aws_request_id = 'c'
for event in json.load(sys.stdin):
    sys.stderr.write('RESPONSE ' + json.dumps(handler(event, Context())) + '\\n')
"""


def _build_args(backend: str) -> dict[str, str]:
    # The default build passes no argument, so the ARG default is what is tested for it.
    default = read_dockerfile(DOCKERFILE.read_text(encoding="utf-8"), {}, ROOT)
    return {} if default.variables["MODEL_BACKEND"] == backend else {"MODEL_BACKEND": backend}


def _invoke(image: Image, layout: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the image's CMD handler on ``events`` in a venv holding only its requirements."""
    python = clean_venv(*image.requirement_sources())
    task_root = layout / LAMBDA_WORKDIR.lstrip("/")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(task_root),
        "PYTHONNOUSERSITE": "1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **{k: (str(layout / v.lstrip("/")) if v.startswith("/opt/") else v) for k, v in image.env.items()},
    }
    done = subprocess.run(
        [str(python), "-s", "-c", INVOKE, image.cmd[0]],
        input=json.dumps(events),
        env=env,
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "capture_failed" in done.stdout
    lines = [x for x in done.stderr.splitlines() if x.startswith("RESPONSE ")]
    return [json.loads(line.removeprefix("RESPONSE ")) for line in lines]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_image_layout_serves_a_prediction_from_its_own_requirements(model_dir, tmp_path, backend):
    bundle_model(model_dir, ROOT / "functions" / "inference" / "model")
    layout = tmp_path / "image"
    image = read_dockerfile(DOCKERFILE.read_text(encoding="utf-8"), _build_args(backend), ROOT, layout)

    predict, health = _invoke(
        image, layout, [load_event("apigw-rest-predict"), load_event("apigw-http-health")]
    )

    assert predict["statusCode"] == 200, predict
    assert [p["label"] for p in json.loads(predict["body"])["predictions"]] == ["0", "1"]
    assert (health["statusCode"], json.loads(health["body"])["backend"]) == (200, backend)


def test_the_default_build_installs_only_the_litert_requirements():
    default = read_dockerfile(DOCKERFILE.read_text(encoding="utf-8"), {}, ROOT)
    tensorflow = read_dockerfile(
        DOCKERFILE.read_text(encoding="utf-8"), {"MODEL_BACKEND": "tensorflow"}, ROOT
    )

    inference = ROOT / "functions" / "inference"
    assert default.env["MODEL_BACKEND"] == "litert"
    assert default.requirement_sources() == [inference / "requirements.txt"]
    assert tensorflow.env["MODEL_BACKEND"] == "tensorflow"
    assert tensorflow.requirement_sources() == [
        inference / "requirements.txt",
        inference / "requirements-tensorflow.txt",
    ]


# ---- the reader itself, on small Dockerfiles ---------------------------------------------------------


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    (context / "pkg").mkdir(parents=True)
    (context / "pkg" / "mod.py").write_text("x = 1\n")
    (context / "req.txt").write_text("numpy\n")
    (context / "extra.txt").write_text("scipy\n")
    with tarfile.open(context / "data.tar.gz", "w:gz") as tar:
        tar.add(context / "req.txt", arcname="inside/req.txt")
    return context


def test_copy_flags_and_local_add_are_laid_out_like_docker(tmp_path):
    text = (
        "FROM base\n"
        "COPY --chown=1000:1000 --chmod=644 pkg /var/task/pkg\n"
        'COPY ["req.txt", "extra.txt", "/tmp/req/"]\n'
        "ADD --chown=app data.tar.gz /opt/data/\n"
        "ADD req.txt copied.txt\n"
    )

    image = read_dockerfile(text, {}, _context(tmp_path), tmp_path / "layout")

    layout = tmp_path / "layout"
    assert (layout / "var/task/pkg/mod.py").read_text() == "x = 1\n"
    assert (layout / "tmp/req/req.txt").is_file() and (layout / "tmp/req/extra.txt").is_file()
    assert (layout / "opt/data/inside/req.txt").read_text() == "numpy\n"
    assert (layout / "var/task/copied.txt").is_file()
    assert set(image.copied) == {
        "/var/task/pkg/mod.py",
        "/tmp/req/req.txt",
        "/tmp/req/extra.txt",
        "/opt/data/inside/req.txt",
        "/var/task/copied.txt",
    }


@pytest.mark.parametrize(
    "line", ["COPY missing.txt /x", "ADD https://example.com/a.tar.gz /x/", "COPY --from=build /a /b"]
)
def test_a_copy_the_context_cannot_satisfy_fails(tmp_path, line):
    with pytest.raises(DockerfileError):
        read_dockerfile(f"FROM base\n{line}\n", {}, _context(tmp_path), tmp_path / "layout")


SCRIPT = (
    "pip install -r /r/base.txt "
    '&& if [ "$BACKEND" = "tf" ]; then python -m pip install --requirement /r/tf.txt; '
    "else pip3 install --requirement=/r/lite.txt; fi && rm -rf /r"
)


@pytest.mark.parametrize(
    ("backend", "expected"), [("tf", ["/r/base.txt", "/r/tf.txt"]), ("lite", ["/r/base.txt", "/r/lite.txt"])]
)
def test_run_conditions_on_build_arguments_pick_the_requirements(backend, expected):
    assert installed_requirements(SCRIPT, {"BACKEND": backend}) == expected


def test_a_run_condition_the_reader_cannot_evaluate_fails():
    with pytest.raises(DockerfileError, match="cannot evaluate"):
        installed_requirements("if [ -f /x ]; then pip install -r /r.txt; fi", {})
