"""What every functional test of a handler needs: a fake AWS environment and a Lambda context."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

ACCOUNT_ID = "123456789012"


def use_fake_aws(monkeypatch: pytest.MonkeyPatch, region: str, variables: Mapping[str, str]) -> None:
    """Fake credentials, ``region``, the function's ``variables``, and no local endpoint override.

    The handlers hand their log configuration to the ``truthwatch`` package logger; it is restored
    after the test, so one handler's set-up never leaks into another test.
    """
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    for name, value in {**credentials, **variables}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    package_logger = logging.getLogger("truthwatch")
    monkeypatch.setattr(package_logger, "handlers", list(package_logger.handlers))
    monkeypatch.setattr(package_logger, "propagate", package_logger.propagate)


@dataclass(frozen=True)
class FakeContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str
    region: str
    memory_limit_in_mb: int = 1024
    remaining_ms: int = 30_000
    function_version: str = "$LATEST"
    aws_request_id: str = "0b8a2f3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c"
    log_stream_name: str = "2026/12/03/[$LATEST]0123456789abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def make_context(
    function_name: str, region: str, memory_mb: int = 1024, remaining_ms: int = 30_000
) -> LambdaContext:
    """A context for ``function_name`` with the attributes handlers and Powertools read."""
    return cast("LambdaContext", FakeContext(function_name, region, memory_mb, remaining_ms))
