"""The inference image, checked without Docker: its requirements, its COPY lines and its CMD.

A clean virtual environment gets exactly ``functions/inference/requirements.txt``; the files are
laid out as the Dockerfile's COPY lines say (parsed, not repeated here); the CMD handler is
imported from that layout in a subprocess and answers an API Gateway event. A COPY of a path
that does not exist, or an import the requirements do not satisfy, fails the test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.functional.contract import clean_venv
from truthwatch.inference_bundle import bundle_model

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "functions" / "inference" / "Dockerfile"
REQUIREMENTS = ROOT / "functions" / "inference" / "requirements.txt"
TASK_ROOT = "/var/task"

pytestmark = pytest.mark.slow


def _contract_venv() -> Path:
    """A venv holding only the image's requirements."""
    return clean_venv(REQUIREMENTS)


def _instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile line, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _substitute(text: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def _lay_out(layout: Path) -> tuple[dict[str, str], str]:
    """Copy files as the COPY lines say; return the image's ENV (paths mapped) and the CMD."""
    variables = {"LAMBDA_TASK_ROOT": TASK_ROOT}
    env: dict[str, str] = {}
    cmd = ""
    for instruction, args in _instructions():
        if instruction == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            variables[name] = value
        elif instruction == "ENV":
            for pair in shlex.split(args):
                name, value = pair.split("=", 1)
                env[name] = _substitute(value, variables)
        elif instruction == "COPY":
            *sources, target = shlex.split(_substitute(args, variables))
            destination = layout / target.lstrip("/")
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"Dockerfile copies {source}, which does not exist"
                if path.is_dir():
                    shutil.copytree(path, destination, dirs_exist_ok=True)
                else:
                    into = destination / path.name if target.endswith("/") else destination
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, into)
        elif instruction == "CMD":
            cmd = json.loads(args)[0]
    return env, cmd


def test_image_layout_serves_a_prediction_from_its_own_requirements(model_dir, tmp_path):
    bundle_model(model_dir, ROOT / "functions" / "inference" / "model")
    python = _contract_venv()
    layout = tmp_path / "image"
    image_env, cmd = _lay_out(layout)
    module, function = cmd.rsplit(".", 1)
    event = json.loads((ROOT / "events" / "apigw-rest-predict.json").read_text(encoding="utf-8"))
    script = (
        "import json, sys, importlib\n"
        f"handler = getattr(importlib.import_module({module!r}), {function!r})\n"
        "class Context:\n"
        "    function_name = 'truthwatch-InferenceFunction'; memory_limit_in_mb = 1024\n"
        "    invoked_function_arn = 'arn:aws:lambda:eu-west-1:1:function:f'; aws_request_id = 'c'\n"
        "response = handler(json.load(sys.stdin), Context())\n"
        "sys.stderr.write('RESPONSE ' + json.dumps(response) + '\\n')\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(layout / TASK_ROOT.lstrip("/")),
        "PYTHONNOUSERSITE": "1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **{k: (str(layout / v.lstrip("/")) if v.startswith("/opt/") else v) for k, v in image_env.items()},
    }

    done = subprocess.run(
        [str(python), "-s", "-c", script],
        input=json.dumps(event),
        env=env,
        cwd=layout / TASK_ROOT.lstrip("/"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stderr.splitlines() if x.startswith("RESPONSE "))
    response = json.loads(line.removeprefix("RESPONSE "))
    assert response["statusCode"] == 200, response
    assert [p["label"] for p in json.loads(response["body"])["predictions"]] == ["0", "1"]
    assert "capture_failed" in done.stdout
