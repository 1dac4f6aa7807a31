"""Fixtures for the alarm function against moto: SES v2, CloudWatch, the idempotency table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from functions.alarm import app
from tests.functional.alarm.mail import REGION
from tests.functional.support import make_context, use_fake_aws

SENDER = "truthwatch@alerts.example.com"
RECIPIENTS = "oncall@example.com, ml-team@example.org"
TABLE = "truthwatch-idempotency"
BUCKET = "truthwatch-data-123456789012"
DASHBOARD = "truthwatch-digits"


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A context with the attributes the handler and Powertools read."""
    return make_context("truthwatch-AlarmFunction", REGION, memory_mb=256)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto with a verified sender and the idempotency table, and the alarm function's environment."""
    use_fake_aws(
        monkeypatch,
        REGION,
        {
            "ALERT_EMAIL": RECIPIENTS,
            "SENDER_EMAIL": SENDER,
            "IDEMPOTENCY_TABLE": TABLE,
            "DATA_BUCKET": BUCKET,
            "DASHBOARD_NAME": DASHBOARD,
            "POWERTOOLS_SERVICE_NAME": "truthwatch-alarm",
        },
    )

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
    logging.getLogger("truthwatch").setLevel(logging.NOTSET)
