"""The local stack, started once for the e2e tests on free ports with the session's trained model."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from infra.local.stack import Console, LocalStack, StackConfig
from truthwatch.training import ExportResult

# Half a second per alarm period: the quality alarms look back 24 periods, so a breach clears
# twelve seconds after its period.
PERIOD_S = 0.5


@pytest.fixture(scope="module")
def local_stack(
    exported_model: ExportResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """A running local stack serving the session's model; stopped after the module's tests."""
    config = StackConfig(
        api_port=0,
        moto_port=0,
        model_dir=exported_model.folder.parent,
        state_dir=tmp_path_factory.mktemp("local-stack"),
        period_s=PERIOD_S,
    )
    # The console writes to memory, where tests read what it announced.
    stack = LocalStack(config, Console(stream=io.StringIO()))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
