"""Fixtures for the alarm function against moto: SES v2, CloudWatch, the idempotency table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import boto3
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID

from functions.alarm import app
from tests.functional.alarm.mail import REGION

SENDER = "truthwatch@alerts.example.com"
RECIPIENTS = "oncall@example.com, ml-team@example.org"
TABLE = "truthwatch-idempotency"
BUCKET = "truthwatch-data-123456789012"
DASHBOARD = "truthwatch-digits"


@dataclass(frozen=True)
class FakeContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "truthwatch-AlarmFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = (
        f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:truthwatch-AlarmFunction"
    )
    memory_limit_in_mb: int = 256
    aws_request_id: str = "5f0c8b1e-2a4d-4c8e-9b7a-1d2e3f4a5b6c"
    log_group_name: str = "/aws/lambda/truthwatch-AlarmFunction"
    log_stream_name: str = "2024/06/03/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A context with the attributes the handler and Powertools read."""
    return cast(LambdaContext, FakeContext())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto with a verified sender and the idempotency table, and the alarm function's environment."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "ALERT_EMAIL": RECIPIENTS,
        "SENDER_EMAIL": SENDER,
        "IDEMPOTENCY_TABLE": TABLE,
        "DATA_BUCKET": BUCKET,
        "DASHBOARD_NAME": DASHBOARD,
        "POWERTOOLS_SERVICE_NAME": "truthwatch-alarm",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    # The handler hands its log configuration to the package logger; restore it for other tests.
    package_logger = logging.getLogger("truthwatch")
    monkeypatch.setattr(package_logger, "handlers", list(package_logger.handlers))
    monkeypatch.setattr(package_logger, "propagate", package_logger.propagate)

    with mock_aws():
        ses = boto3.client("sesv2", region_name=REGION)
        ses.create_email_identity(EmailIdentity=SENDER)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        app.notifier.cache_clear()
        yield {
            "ses": ses,
            "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
            "dynamodb": dynamodb,
        }
        app.notifier.cache_clear()
    package_logger.setLevel(logging.NOTSET)
