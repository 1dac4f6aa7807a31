"""The zip functions as Lambda runs them: their own requirements, the layer, nothing else.

Each handler runs in a subprocess whose venv holds exactly ``functions/<name>/requirements.txt``,
with the ``truthwatch`` package on the path the way the layer puts it, against a moto server in
this process (the subprocess reaches it through ``AWS_ENDPOINT_URL``). A dependency the
requirements forgot, imported at load or only on the path that processes a file, fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from functions.alarm import app as alarm_app
from tests.events import load_event
from tests.functional.alarm import conftest as alarm_fixtures
from tests.functional.alarm.mail import sent_emails
from tests.functional.contract import ROOT, clean_venv
from tests.functional.metrics import conftest as metrics_fixtures
from tests.functional.metrics.conftest import BUCKET, Stack, record_predictions

pytestmark = pytest.mark.slow

# The fixtures of the two functions' own functional tests: moto state and each one's environment.
aws = alarm_fixtures.aws
stack = metrics_fixtures.stack

LAYER = ROOT / "layers" / "truthwatch"
INVOKE = """
import json, sys
import app

class Context:
    function_name = sys.argv[1]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:" + sys.argv[2] + ":123456789012:function:" + sys.argv[1]
    memory_limit_in_mb = 1024
    aws_request_id = "contract"

    def get_remaining_time_in_millis(self):
        return 60_000

event = json.load(sys.stdin)
print("RESULT " + json.dumps(app.lambda_handler(event, Context()), default=str))
"""


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port, sharing this process's moto state."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _invoke(function: str, event: dict[str, Any], endpoint: str, tmp_path: Path, region: str) -> Any:
    """Run ``functions/<function>/app.py`` from a copy of its folder in its clean venv."""
    python = clean_venv(ROOT / "functions" / function / "requirements.txt")
    task_root = tmp_path / function
    shutil.copytree(ROOT / "functions" / function, task_root, ignore=shutil.ignore_patterns("__pycache__"))
    passed = {name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env = {**passed, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(LAYER)}
    done = subprocess.run(
        [str(python), "-c", INVOKE, f"truthwatch-{function}", region],
        input=json.dumps(event),
        cwd=task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_metrics_handler_processes_a_label_file_with_only_its_requirements(
    stack: Stack, moto_server: str, tmp_path: Path
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=2), rows=250)
    body = "inference_id,label\n" + "".join(
        f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True)
    )
    etag = stack.put_labels("labels/contract.csv", body.encode())
    event = load_event("s3-object-created-labels")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = BUCKET
    record["s3"]["object"].update({"key": "labels/contract.csv", "size": len(body), "eTag": etag})
    record["s3"]["object"].pop("versionId", None)

    result = _invoke("metrics", event, moto_server, tmp_path, os.environ["AWS_REGION"])

    processed = result["processed"][0]
    assert processed["matched"] == 250
    assert processed["read"] == 250
    reports = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"reports/{stack.card.version}/")
    assert {Path(o["Key"]).suffix for o in reports["Contents"]} == {".json", ".html"}


def test_alarm_handler_sends_an_email_with_only_its_requirements(
    aws: dict[str, Any], moto_server: str, tmp_path: Path
) -> None:
    alarm_app.notifier.cache_clear()

    _invoke("alarm", load_event("alarm-sns-metric"), moto_server, tmp_path, os.environ["AWS_REGION"])

    emails = sent_emails()
    assert len(emails) == 1
    assert emails[0].subject.startswith("[FIRING]")


# Lambda's limit on a function and its layers together, unzipped
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
UNZIPPED_LIMIT_BYTES = 262_144_000


def _tree_bytes(folder: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the files under ``folder`` as ``sam build`` ships them: no ``__pycache__``."""
    return sum(
        path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not path.relative_to(folder).parts[0].startswith(skip)
    )


@pytest.mark.parametrize("function", ["metrics", "alarm"])
def test_zip_function_and_layer_fit_lambdas_unzipped_limit(function: str) -> None:
    python = clean_venv(ROOT / "functions" / function / "requirements.txt")
    site = next((python.parent.parent / "lib").glob("python3.*/site-packages"))

    # The venv's own pip is not part of the deployment package.
    size = _tree_bytes(site, skip=("pip", "_distutils_hack")) + _tree_bytes(LAYER / "truthwatch")

    # Measured: metrics 240 MB with the layer, 92% of the limit (scipy, which scikit-learn needs,
    # is 84 MB of it); alarm 28 MB.
    assert size < 0.95 * UNZIPPED_LIMIT_BYTES, f"{function}: {size:,} bytes of {UNZIPPED_LIMIT_BYTES:,}"
