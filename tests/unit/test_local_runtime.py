"""The local Lambda runtime imports a handler afresh and leaves the process as it found it."""

from __future__ import annotations

import importlib
from pathlib import Path

from infra.local.runtime import FunctionSpec, LocalFunction

MODULE = "functions.alarm.app"


def _function(tmp_path: Path) -> LocalFunction:
    spec = FunctionSpec("AlarmFunction", "truthwatch-AlarmFunction", MODULE, "lambda_handler")
    return LocalFunction(spec, "us-east-1", "123456789012", tmp_path / "alarm.log")


def test_local_function_imports_its_own_module_and_puts_the_earlier_one_back(tmp_path: Path) -> None:
    earlier = importlib.import_module(MODULE)
    package = importlib.import_module("functions.alarm")
    function = _function(tmp_path)

    function.load()
    loaded = importlib.import_module(MODULE)
    function.unload()

    assert loaded is not earlier
    # `from functions.alarm import app` reads the package attribute, not sys.modules.
    assert importlib.import_module(MODULE) is earlier
    assert package.app is earlier
