"""A Lambda-like runtime for the handlers, in this process.

Each :class:`LocalFunction` imports its handler module the first time it is invoked and calls
``lambda_handler(event, context)`` with a context object carrying what Powertools reads. What a
handler prints is captured per invocation: embedded-metric-format lines become CloudWatch
datapoints (as Lambda's log pipeline does), every other line goes to the function's log file.

Lambda runs one invocation per execution environment at a time, and the handlers read their
settings from ``os.environ``. All functions here share one process and one environment, so every
invocation holds one lock and runs with its own function's variables applied; the stack's HTTP
server and queue pollers therefore never run two handlers at once (see "Known limitations" in
``docs/local.md``).

They share the ``truthwatch`` package's loggers too, which a handler configures with its own
Powertools Logger (``copy_config_to_registered_loggers``: its handler, its service name and the
keys of its current invocation). In Lambda each function configures them in a process of its
own; here the last function to configure them would tag every other function's package lines
with its service, function name and request id. So each function keeps its own configuration of
those loggers (:data:`SHARED_LOGGERS`), put in place for its import and its invocations and taken
away after them.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from infra.local.emf import Datapoint, parse_emf_line

logger = logging.getLogger(__name__)

_INVOKE_LOCK = threading.RLock()
_thread_state = threading.local()

SHARED_LOGGERS = ("truthwatch",)
"""Packages whose loggers every handler imports from the same module objects and configures itself."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to know about one function of the template.

    Attributes
    ----------
    logical_id
        The function's logical id in ``template.yaml``.
    name
        The local function name (also the ``FunctionName`` dimension of its ``AWS/Lambda`` metrics).
    module, handler
        ``functions.<name>.app`` and ``lambda_handler``, from the template's ``Handler``.
    environment
        The function's variables, resolved, with local overrides applied.
    timeout_s, memory_mb
        From the template, for the context object.
    """

    logical_id: str
    name: str
    module: str
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    memory_mb: int = 512


@dataclass
class Invocation:
    """The outcome of one invocation."""

    result: Any
    error: str | None
    duration_ms: float
    datapoints: list[Datapoint]
    request_id: str = ""
    """The context's ``aws_request_id``, as the handler's log lines carry it."""


@dataclass(frozen=True)
class _LoggerSetup:
    """What a handler may change on a logger: where records go and which pass."""

    handlers: tuple[logging.Handler, ...] = ()
    filters: tuple[Any, ...] = ()
    level: int = logging.NOTSET
    propagate: bool = True


def _shared_loggers() -> dict[str, logging.Logger]:
    return {
        name: found
        for name, found in list(logging.Logger.manager.loggerDict.items())
        if isinstance(found, logging.Logger)
        and any(name == package or name.startswith(package + ".") for package in SHARED_LOGGERS)
    }


def _logger_setups() -> dict[str, _LoggerSetup]:
    return {
        name: _LoggerSetup(tuple(found.handlers), tuple(found.filters), found.level, found.propagate)
        for name, found in _shared_loggers().items()
    }


def _apply_logger_setups(setups: dict[str, _LoggerSetup]) -> None:
    # A logger missing from ``setups`` did not exist when they were taken: it gets the setup of a
    # logger nobody configured, as in a process that imported its module but never configured it.
    for name, found in _shared_loggers().items():
        setup = setups.get(name, _LoggerSetup())
        found.handlers = list(setup.handlers)
        found.filters = list(setup.filters)
        found.setLevel(setup.level)
        found.propagate = setup.propagate


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, region: str, account: str) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{spec.name}"
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _ThreadRouter(io.TextIOBase):
    """A ``sys.stdout`` stand-in: inside an invocation, writes go to that invocation's buffer."""

    def __init__(self, base: TextIO) -> None:
        self.base = base

    def write(self, text: str) -> int:
        buffer: io.StringIO | None = getattr(_thread_state, "buffer", None)
        if buffer is not None:
            return buffer.write(text)
        return self.base.write(text)

    def flush(self) -> None:
        self.base.flush()

    def writable(self) -> bool:
        return True


def _install_router() -> None:
    # Installed lazily at each invocation: a test runner may have replaced the streams since.
    # Lambda sends both streams to the function's log, so both are captured.
    if not isinstance(sys.stdout, _ThreadRouter):
        sys.stdout = _ThreadRouter(sys.stdout)
    if not isinstance(sys.stderr, _ThreadRouter):
        sys.stderr = _ThreadRouter(sys.stderr)


def uninstall_router() -> None:
    """Put back the streams that were there before the first invocation."""
    if isinstance(sys.stdout, _ThreadRouter):
        sys.stdout = sys.stdout.base
    if isinstance(sys.stderr, _ThreadRouter):
        sys.stderr = sys.stderr.base


@contextmanager
def _captured() -> Iterator[io.StringIO]:
    _install_router()
    buffer = io.StringIO()
    _thread_state.buffer = buffer
    try:
        yield buffer
    finally:
        _thread_state.buffer = None


@contextmanager
def process_environment(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process's environment for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalFunction:
    """One handler, invoked the way Lambda would invoke it.

    Parameters
    ----------
    spec
        The function's definition.
    region, account
        For the context object's ARN.
    log_path
        File that receives every line the handler prints that is not EMF.
    on_datapoints
        Called with the EMF datapoints of each invocation (the stack sends them to CloudWatch).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        region: str,
        account: str,
        log_path: Path,
        on_datapoints: Callable[[FunctionSpec, Invocation], None] | None = None,
    ) -> None:
        self.spec = spec
        self.region = region
        self.account = account
        self.log_path = log_path
        self.on_datapoints = on_datapoints
        self.invocations = 0
        self.errors = 0
        self._module: ModuleType | None = None
        self._previous: ModuleType | None = None
        self._loggers: dict[str, _LoggerSetup] | None = None

    def load(self) -> None:
        """Import the handler module under the function's environment (a cold start)."""
        # A fresh module: settings and clients a handler caches at module level must come from
        # this function's environment, not from an earlier import in the same process (tests).
        self._previous = sys.modules.pop(self.spec.module, None)
        with (
            _INVOKE_LOCK,
            process_environment(self.spec.environment),
            self._own_loggers(),
            _captured() as buffer,
        ):
            try:
                self._module = importlib.import_module(self.spec.module)
            finally:
                self._write_log(buffer.getvalue())
        if not callable(getattr(self._module, self.spec.handler, None)):
            raise AttributeError(f"{self.spec.module} has no callable {self.spec.handler!r}")

    def unload(self) -> None:
        """Put back whatever module of that name was imported before :meth:`load`."""
        if self._module is not None and sys.modules.get(self.spec.module) is self._module:
            del sys.modules[self.spec.module]
            if self._previous is not None:
                sys.modules[self.spec.module] = self._previous
            _restore_attribute(self.spec.module, self._previous)
        self._module = None

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Run the handler on ``event``; an exception becomes ``Invocation.error``, as Lambda reports it."""
        if self._module is None:
            self.load()
        handler = getattr(self._module, self.spec.handler)

        with _INVOKE_LOCK, process_environment(self.spec.environment), self._own_loggers():
            context = LambdaContext(self.spec, self.region, self.account)
            started = time.perf_counter()
            result: Any = None
            error: str | None = None
            with _captured() as buffer:
                try:
                    result = handler(event, context)
                except Exception as exc:  # noqa: BLE001 - Lambda reports any failure of the handler
                    error = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc(file=buffer)
            duration_ms = (time.perf_counter() - started) * 1000
            self.invocations += 1
            self.errors += error is not None

        points = self._split_output(buffer.getvalue())
        invocation = Invocation(result, error, duration_ms, points, context.aws_request_id)
        if self.on_datapoints is not None:
            self.on_datapoints(self.spec, invocation)
        return invocation

    @contextmanager
    def _own_loggers(self) -> Iterator[None]:
        """This function's configuration of the shared package loggers for the block, then the one before."""
        outside = _logger_setups()
        if self._loggers is not None:
            _apply_logger_setups(self._loggers)
        try:
            yield
        finally:
            self._loggers = _logger_setups()
            _apply_logger_setups(outside)

    def _split_output(self, output: str) -> list[Datapoint]:
        points: list[Datapoint] = []
        other: list[str] = []
        for line in output.splitlines():
            parsed = parse_emf_line(line)
            if parsed is None:
                other.append(line)
            else:
                points.extend(parsed)
        self._write_log("\n".join(other))
        return points

    def _write_log(self, text: str) -> None:
        if not text.strip():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n")


def _restore_attribute(module: str, previous: ModuleType | None) -> None:
    # An import also binds the module as an attribute of its package, and `from package import
    # name` reads that attribute first: put the earlier module back there too, or remove ours.
    package_name, _, name = module.rpartition(".")
    package = sys.modules.get(package_name)
    if package is None:
        return
    if previous is not None:
        setattr(package, name, previous)
    elif hasattr(package, name):
        delattr(package, name)
