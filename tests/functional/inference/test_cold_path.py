"""What the first answer of a fresh process imports: nothing it does not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = """
import json, sys
from functions.inference import app
from tests.events import load_event
from truthwatch.capture import MemoryRecorder

class Context:
    function_name = "truthwatch-InferenceFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:truthwatch-InferenceFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "cold-path"

recorder = MemoryRecorder()
app.use_recorder(recorder)
response = app.lambda_handler(load_event("apigw-rest-predict"), Context())
modules = ("boto3", "botocore.client", "aws_xray_sdk.core", "tensorflow")
loaded = {name: name in sys.modules for name in modules}
sys.stderr.write(json.dumps({"status": response["statusCode"], "records": len(recorder.records), **loaded}))
"""


@pytest.mark.slow
def test_first_answer_without_table_imports_neither_boto3_nor_the_xray_sdk(model_dir):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PREDICTIONS_TABLE", "DATA_BUCKET", "LAMBDA_TASK_ROOT", "AWS_XRAY_SDK_ENABLED"}
    }
    env.update({"MODEL_DIR": str(model_dir), "PYTHONPATH": str(ROOT)})

    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )

    outcome = json.loads(done.stderr.strip().splitlines()[-1])
    assert outcome == {
        "status": 200,
        "records": 2,
        "boto3": False,
        "botocore.client": False,
        "aws_xray_sdk.core": False,
        "tensorflow": False,
    }
