"""With ``ApiAuth=API_KEY`` the local gateway refuses calls without the key, as API Gateway does.

The same stack is deployed with ``SenderIdentity=existing``: it creates no identity and finds the
sender verified, as a second stack in one account would.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import Console, LocalStack, StackConfig
from truthwatch.training import ExportResult

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "local-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_stack(
    exported_model: ExportResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """A local stack deployed with ``ApiAuth=API_KEY`` and a known key."""
    config = StackConfig(
        api_port=0,
        moto_port=0,
        model_dir=exported_model.folder.parent,
        state_dir=tmp_path_factory.mktemp("keyed-stack"),
        parameters={"ApiAuth": "API_KEY", "SenderIdentity": "existing"},
        api_key=KEY,
    )
    stack = LocalStack(config, Console(quiet=True))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _call(stack: LocalStack, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(stack.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY.upper(), KEY + " "])
@pytest.mark.parametrize(("method", "path"), [("GET", "/health"), ("GET", "/model"), ("POST", "/predict")])
def test_calls_without_the_key_are_forbidden(
    keyed_stack: LocalStack, method: str, path: str, key: str | None
) -> None:
    before = keyed_stack.request_counts().get(200, 0)

    status, body = _call(
        keyed_stack, method, path, key, {"instances": [[0.0] * 64]} if method == "POST" else None
    )

    assert (status, body) == (403, {"message": "Forbidden"})
    assert keyed_stack.request_counts().get(200, 0) == before


def test_calls_with_the_key_reach_the_function(keyed_stack: LocalStack) -> None:
    status, health = _call(keyed_stack, "GET", "/health", KEY)
    predicted, answer = _call(keyed_stack, "POST", "/predict", KEY, {"instances": [[0.0] * 64]})

    assert keyed_stack.api_key == KEY
    assert (status, health["status"]) == (200, "ok")
    assert predicted == 200 and len(answer["predictions"]) == 1


def test_unknown_routes_are_refused_before_the_key_is_checked(keyed_stack: LocalStack) -> None:
    assert _call(keyed_stack, "GET", "/admin", KEY) == (403, {"message": "Missing Authentication Token"})


def test_an_existing_sender_identity_is_taken_as_verified(keyed_stack: LocalStack) -> None:
    identities = keyed_stack.client("ses").list_identities()["Identities"]

    assert identities == ["truthwatch@example.com"]
