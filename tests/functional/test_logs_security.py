"""At INFO the logs hold no raw inputs and no labels: the lines are read back and searched.

A distinctive pixel value (13.371337) goes through the inference handler; every log line it writes
at INFO or above must be free of it and of the answered probabilities. Capture failures are the
documented exception: their ERROR line
holds the whole record for replay, and with ``CAPTURE_INPUTS=binned`` that is bin indexes only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from functions.inference import app as inference_app
from tests.events import load_event
from tests.functional.inference import conftest as inference_fixtures
from tests.functional.inference.conftest import inference_context
from tests.functional.metrics import conftest as metrics_fixtures

pytestmark = pytest.mark.slow

aws = inference_fixtures.aws
stack = metrics_fixtures.stack
lambda_context = metrics_fixtures.lambda_context

PIXEL = 13.371337
SECRET_LABEL = "label-text-7f3a9c"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}"
        for r in caplog.records
        if r.levelno >= logging.INFO
    ]


def test_inference_logs_no_inputs_or_probabilities_at_info(
    aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = load_event("apigw-rest-predict")
    event["body"] = json.dumps({"instances": [[PIXEL] * 64], "inference_ids": ["id-0001"]})

    response = inference_app.lambda_handler(event, inference_context())

    assert response["statusCode"] == 200
    probabilities = json.loads(response["body"])["predictions"][0]["probabilities"]
    lines = _lines(caplog)
    assert any("predicted" in line for line in lines)
    assert not [line for line in lines if "13.37" in line]
    assert not [line for line in lines if any(str(p) in line for p in probabilities if len(str(p)) > 6)]
