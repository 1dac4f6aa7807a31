"""Fixtures for the inference handler against moto DynamoDB and S3, with the session's model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import orjson
import pytest
from moto import mock_aws

from functions.inference import app, openapi
from tests.functional.support import make_context, use_fake_aws

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

REGION = "eu-west-1"
TABLE = "truthwatch-predictions"
BUCKET = "truthwatch-data-123456789012"


def inference_context() -> LambdaContext:
    """A Lambda context of the inference function."""
    return make_context("truthwatch-InferenceFunction", REGION)


def create_table(client: Any, name: str = TABLE) -> None:
    """The predictions table as template.yaml declares it (key inference_id)."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "inference_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "inference_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Iterator[dict[str, Any]]:
    """moto with the predictions table and the data bucket, and the function's environment."""
    use_fake_aws(
        monkeypatch,
        REGION,
        {
            "MODEL_DIR": str(model_dir),
            "PREDICTIONS_TABLE": TABLE,
            "DATA_BUCKET": BUCKET,
            "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
        },
    )
    app.use_recorder(None)
    app.settings.cache_clear()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        create_table(dynamodb)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield {"dynamodb": dynamodb, "s3": s3}
    app.settings.cache_clear()
    app.service.cache_clear()


@cache
def _openapi_paths() -> dict[str, Any]:
    paths: dict[str, Any] = json.loads(openapi.document())["paths"]
    return paths


def documented_statuses(method: str, path: str) -> set[int] | None:
    """The statuses the OpenAPI document lists for an operation; ``None`` when it has no such one."""
    operation = _openapi_paths().get(path.rstrip("/") or "/", {}).get(method.lower())
    return None if operation is None else {int(status) for status in operation["responses"]}


def assert_documented(event: dict[str, Any], status: int) -> None:
    """Every answer a test sees is in the OpenAPI document: its status under its operation, or a
    404/405 for a request that matches no operation."""
    if event.get("version") == "2.0":
        method, path = event["requestContext"]["http"]["method"], event["rawPath"]
    else:
        method, path = event["httpMethod"], event["path"]
    statuses = documented_statuses(method, path)
    if statuses is None:
        assert status in (404, 405), f"{method} {path} is not in the document but answered {status}"
    else:
        assert status in statuses, f"{method} {path} answered {status}, the document lists {sorted(statuses)}"


@pytest.fixture
def invoke(aws: dict[str, Any]) -> Callable[[dict[str, Any]], tuple[int, Any, dict[str, Any]]]:
    """Call the handler; return status, parsed body (strict JSON: NaN would fail) and the response.

    Each answer is also checked against the OpenAPI document (:func:`assert_documented`).
    """

    def call(event: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
        response = app.lambda_handler(event, inference_context())
        assert_documented(event, response["statusCode"])
        return response["statusCode"], orjson.loads(response["body"]), response

    return call


def items(client: Any, table: str = TABLE) -> dict[str, dict[str, Any]]:
    """Every item of the table, by inference id, in the low-level attribute form."""
    found = client.scan(TableName=table)["Items"]
    return {item["inference_id"]["S"]: item for item in found}
