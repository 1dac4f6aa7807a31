"""The local stack: moto, the resources of ``template.yaml``, the handlers, HTTP, alarms and the outbox.

:class:`LocalStack` starts everything in this process and stops it again::

    with LocalStack(StackConfig()) as stack:
        ...  # http://127.0.0.1:3000/predict, s3://<bucket>/labels/..., stack.outbox.emails

What runs where:

- a moto server on ``127.0.0.1:<moto port>``; the stack sets ``AWS_ENDPOINT_URL``, fake credentials
  and the region for this process, so every boto3 client (the handlers' too) talks to it;
- the inference handler behind an HTTP server on ``127.0.0.1:<api port>`` (``gateway``);
- the metrics handler, invoked with each S3 event moto delivers to a local SQS queue that stands in
  for the bucket's notification to the function;
- the alarm handler, invoked with each notification moto delivers from the alarm topic to a local
  SQS queue that stands in for the function's subscription;
- the alarm evaluator (``alarms``) and the outbox (``outbox``), on background threads.

Each report the metrics handler writes is announced on the console and copied from the bucket to
``<state_dir>/reports/``, where it can be opened without an S3 client.

An invocation that fails is retried twice and then sent to the function's on-failure destination,
as Lambda does for asynchronous invocations.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.local.alarms import AlarmEvaluator, Transition
from infra.local.emf import Datapoint, put_datapoints
from infra.local.gateway import LocalGateway
from infra.local.outbox import Outbox, SentEmail
from infra.local.resources import FunctionPlan, Provisioned, Source, provision
from infra.local.runtime import (
    FunctionSpec,
    Invocation,
    LocalFunction,
    process_environment,
    uninstall_router,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
# Lambda retries a failed asynchronous invocation twice:
# https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html
ASYNC_RETRIES = 2


@dataclass(frozen=True)
class WrittenReport:
    """One report object the metrics handler wrote, and its copy on this machine."""

    label_key: str
    s3_key: str
    path: Path | None  # None when the key cannot be a local file name (the console says why)


class StackError(Exception):
    """The stack cannot start; the message says why and what to do."""


@dataclass
class StackConfig:
    """Where the stack listens and what it reads.

    Attributes
    ----------
    api_port, moto_port
        Ports on ``host``; 0 picks free ones (the tests do).
    model_dir
        The exported model folder (with ``LATEST``) the inference handler serves.
    state_dir
        Holds ``outbox/`` (emails) and ``logs/`` (one file per function).
    period_s
        Length of every alarm period locally (see :mod:`infra.local.alarms`).
    config_env
        The ``samconfig.toml`` environment whose parameter overrides apply.
    parameters
        Parameter values that win over ``samconfig.toml`` and the template defaults.
    api_key
        The key the gateway requires when the template's ``ApiAuth`` is ``API_KEY``; ``None`` draws
        a random one at start (``LocalStack.api_key`` and the console give it).
    """

    root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    api_port: int = 3000
    moto_port: int = 5050
    region: str = "us-east-1"
    model_dir: Path = REPO_ROOT / "artifacts" / "models" / "digits"
    state_dir: Path = REPO_ROOT / "artifacts" / "local"
    period_s: float = 10.0
    config_env: str = "default"
    parameters: dict[str, str] = field(default_factory=dict)
    echo_logs: bool = False
    api_key: str | None = None


class Console:
    """The stack's own lines on the terminal (handlers' output goes to their log files)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        """Write one line, prefixed with the time."""
        if self.quiet:
            return
        with self._lock:
            self.stream.write(f"{time.strftime('%H:%M:%S')}  {text}\n")
            self.stream.flush()


def printable(text: object) -> str:
    """``text`` for the console: characters that would move the cursor or recolour it are escaped.

    Label keys are chosen by whoever uploads them, and an escape sequence in one must not clear or
    rewrite the lines of the console.
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def local_report_path(folder: Path, key: str) -> Path | None:
    """Where the copy of report ``key`` goes under ``folder``: its path below ``reports/``.

    ``None`` when a part of the key cannot be a file name here (``..``, over 255 bytes), since label
    keys, and so report keys, are chosen by whoever uploads the labels.
    """
    parts = key.split("/")[1:]

    def unsafe(part: str) -> bool:
        return part in ("", ".", "..") or "\0" in part or len(part.encode("utf-8", "replace")) > 255

    if not parts or any(unsafe(part) for part in parts):
        return None
    return folder.joinpath(*parts)


@contextmanager
def s3_events_with_version_ids() -> Iterator[None]:
    """Give moto's S3 notifications the ``versionId`` that S3 puts in them for a versioned bucket.

    moto 5 sends key, size and ETag only. The metrics function keys its once-only processing on
    bucket, key and version id, falling back to the ETag, so without it the same bytes uploaded
    again under one key (A, then B, then A) would be taken for the first upload and skipped locally,
    where S3 would deliver a new version. The patch wraps moto's event builder while the stack runs.
    """
    from moto.s3 import notifications

    original = notifications._get_s3_event

    def with_version(event_name: Any, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        version = getattr(key, "version_id", None)
        if version and version != "null":  # "null": an unversioned bucket's objects, as in S3
            for record in event["Records"]:
                record["s3"]["object"]["versionId"] = version
        return event

    notifications._get_s3_event = with_version
    try:
        yield
    finally:
        notifications._get_s3_event = original


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be bound now (0 always can)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves do: connections of a stopped stack in TIME_WAIT do not count,
        # a socket still listening does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class LocalStack:
    """Everything of the local stack, started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, config: StackConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console()
        self.functions: dict[str, LocalFunction] = {}
        self.transitions: list[Transition] = []
        self.emails: list[SentEmail] = []
        self.reports: list[WrittenReport] = []
        self.failures: list[tuple[str, str]] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._env_cm: Any = None
        self._versions_cm: Any = None
        self._moto: Any = None
        self.gateway: LocalGateway | None = None
        self.evaluator: AlarmEvaluator | None = None
        self.outbox: Outbox | None = None
        self.provisioned: Provisioned | None = None
        self.endpoint = ""

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """Base URL of the inference API."""
        assert self.gateway is not None, "start the stack first"
        return self.gateway.url

    @property
    def api_key(self) -> str | None:
        """The key the API requires (``ApiAuth=API_KEY``), or ``None`` when it requires none locally."""
        assert self.gateway is not None, "start the stack first"
        return self.gateway.api_key

    def client(self, service: str) -> Any:
        """A boto3 client of the local endpoint."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.config.region)  # type: ignore[call-overload]

    def name_of(self, logical_id: str) -> str:
        """The local physical name of a template resource."""
        assert self.provisioned is not None, "start the stack first"
        return self.provisioned.names[logical_id]

    def start(self) -> None:
        """Check the model and ports, start moto, create the resources, load and wire the handlers."""
        config = self.config
        model_folder = self._check_model()
        for label, port in (("API", config.api_port), ("moto", config.moto_port)):
            if not port_free(config.host, port):
                raise StackError(
                    f"port {port} on {config.host} is in use, so the {label} server cannot listen there; "
                    "stop what holds it (another `make serve`?) or choose another port"
                )

        self._versions_cm = s3_events_with_version_ids()
        self._versions_cm.__enter__()
        try:
            self._start_moto()
            self._env_cm = process_environment(self._aws_environment())
            self._env_cm.__enter__()
            self._start_services(model_folder)
        except BaseException:
            self.stop()
            raise

    def _check_model(self) -> Path:
        from truthwatch.errors import ModelLoadError
        from truthwatch.registry import resolve_model_dir
        from truthwatch.runtime import load_runtime

        try:
            folder = resolve_model_dir(self.config.model_dir)
        except ModelLoadError as exc:
            raise StackError(
                f"no exported model to serve ({exc}); run `make train` (or `truthwatch train`) first"
            ) from None
        try:
            # Loading checks every file against the card's checksums, so a damaged export stops
            # the stack here rather than answering 502 to every request.
            load_runtime(folder)
        except ModelLoadError as exc:
            raise StackError(f"the exported model cannot be served ({exc}); run `make train` again") from None
        return folder

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request moto answers; the console reports what matters instead.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(
            ip_address=self.config.host, port=self.config.moto_port, verbose=False
        )
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # An in-process moto server keeps its state in module globals, shared by every server this
        # process starts: a second stack (tests start several) would find the first one's tables.
        # Each stack starts from an empty account.
        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 (loopback http)
        with urllib.request.urlopen(reset, timeout=10) as answer:  # noqa: S310
            answer.read()

    def _aws_environment(self) -> dict[str, str]:
        # Fake credentials and the local endpoint for every client this process builds, the
        # handlers' included; nothing can reach a real AWS endpoint while the stack runs.
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_REGION": self.config.region,
        }

    def _start_services(self, model_folder: Path) -> None:
        config = self.config
        try:
            self.provisioned = provision(
                root=config.root,
                clients=self.client,
                region=config.region,
                account=ACCOUNT,
                config_env=config.config_env,
                overrides=config.parameters,
                model_dir=config.model_dir,
            )
        except ValueError as exc:  # infra.cfn.TemplateError and bad --parameter values
            raise StackError(f"cannot create the resources of template.yaml: {exc}") from None
        cloudwatch: CloudWatchClient = self.client("cloudwatch")
        logs = config.state_dir / "logs"

        def publish(spec: FunctionSpec, invocation: Invocation) -> None:
            self._publish_invocation(cloudwatch, spec, invocation)

        for logical_id, plan in self.provisioned.functions.items():
            function = LocalFunction(
                plan.spec, config.region, ACCOUNT, logs / f"{plan.spec.name}.log", publish
            )
            function.load()
            self.functions[logical_id] = function

        self._start_gateway()
        self._start_pollers()
        self._start_alarms(cloudwatch)
        self._start_outbox()
        self._announce(model_folder)

    def _publish_invocation(
        self, cloudwatch: CloudWatchClient, spec: FunctionSpec, invocation: Invocation
    ) -> None:
        # Lambda publishes these for every function (AWS/Lambda); the service alarms watch them.
        now = datetime.now(tz=UTC)
        dimensions = (("FunctionName", spec.name),)
        lambda_points = [
            Datapoint("AWS/Lambda", "Invocations", dimensions, 1.0, "Count", now),
            Datapoint("AWS/Lambda", "Errors", dimensions, float(invocation.error is not None), "Count", now),
            Datapoint("AWS/Lambda", "Duration", dimensions, invocation.duration_ms, "Milliseconds", now),
        ]
        put_datapoints(cloudwatch, [*invocation.datapoints, *lambda_points])

    def _invoke_sync(self, logical_id: str) -> Callable[[dict[str, Any]], Any]:
        function = self.functions[logical_id]

        def call(event: dict[str, Any]) -> Any:
            invocation = function.invoke(event)
            if invocation.error is not None:
                self.console.say(f"{function.spec.name} failed: {invocation.error} (see {function.log_path})")
                raise RuntimeError(invocation.error)
            return invocation.result

        return call

    def _start_gateway(self) -> None:
        assert self.provisioned is not None
        api = [(lid, plan) for lid, plan in self.provisioned.functions.items() if plan.api_routes]
        if not api:
            raise StackError("template.yaml declares no function with Api events to serve over HTTP")
        logical_id, plan = api[0]
        api_key = None
        if self.provisioned.parameters.get("ApiAuth") == "API_KEY":
            api_key = self.config.api_key or secrets.token_urlsafe(24)
        try:
            self.gateway = LocalGateway(
                self.config.host,
                self.config.api_port,
                plan.api_routes,
                self._invoke_sync(logical_id),
                stage=self.provisioned.parameters.get("Stage", "local"),
                api_key=api_key,
            )
        except OSError as exc:
            raise StackError(f"the API cannot listen on port {self.config.api_port}: {exc}") from None
        self.gateway.start()

    def _start_pollers(self) -> None:
        assert self.provisioned is not None
        for logical_id, plan in self.provisioned.functions.items():
            for source in plan.sources:
                self._spawn(f"poll-{logical_id}-{source.kind}", self._poll, logical_id, plan, source)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll(self, logical_id: str, plan: FunctionPlan, source: Source) -> None:
        sqs: SQSClient = self.client("sqs")
        queue_url = source.queue_url
        while not self._stop.is_set():
            try:
                received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("receiving from %s failed", queue_url)
                time.sleep(0.5)
                continue
            for message in received.get("Messages", []):
                event = source.event_from(message["Body"])
                if event is not None:
                    self._invoke_async(logical_id, plan, event)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _invoke_async(self, logical_id: str, plan: FunctionPlan, event: dict[str, Any]) -> None:
        function = self.functions[logical_id]
        error = None
        for _attempt in range(1 + ASYNC_RETRIES):
            invocation = function.invoke(event)
            error = invocation.error
            if error is None:
                self._collect_reports(invocation.result)
                return
        self.failures.append((function.spec.name, str(error)))
        self.console.say(f"{function.spec.name} failed 3 times: {error} (see {function.log_path})")
        if plan.on_failure_queue:
            body = {"requestPayload": event, "responsePayload": {"errorMessage": error}}
            self.client("sqs").send_message(QueueUrl=plan.on_failure_queue, MessageBody=json.dumps(body))

    def _collect_reports(self, result: Any) -> None:
        """Copy and announce each report a metrics invocation's summary names (``processed[].reports``)."""
        if not isinstance(result, dict):
            return
        bucket = self.name_of("DataBucket")
        folder = self.config.state_dir / "reports"
        s3 = self.client("s3")
        for summary in result.get("processed", []):
            for key in summary.get("reports", []):
                if not key.startswith("reports/"):
                    continue  # rejected/<label key>.jsonl
                path = local_report_path(folder, key)
                try:
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(body)
                except (OSError, BotoCoreError, ClientError) as exc:
                    # A copy is a convenience: it must not stop the poller that called the handler.
                    self.console.say(printable(f"report s3://{bucket}/{key} not copied: {exc}"))
                    path = None
                self.reports.append(WrittenReport(str(summary.get("key", "")), key, path))
                if key.endswith(".json"):
                    where = f" -> {path}" if path is not None else ""
                    self.console.say(printable(f"report on {summary.get('key')}: s3://{bucket}/{key}{where}"))

    def _start_alarms(self, cloudwatch: CloudWatchClient) -> None:
        from botocore.loaders import Loader
        from moto.cloudwatch.models import cloudwatch_backends

        regions = Loader().load_data("endpoints")["partitions"][0]["regions"]
        region_name = regions.get(self.config.region, {}).get("description", self.config.region)

        def backend_data() -> list[Any]:
            return list(cloudwatch_backends[ACCOUNT][self.config.region].metric_data)

        def on_transition(transition: Transition) -> None:
            self.transitions.append(transition)
            self.console.say(f"alarm {transition.alarm}: {transition.old} -> {transition.new}")

        self.evaluator = AlarmEvaluator(
            cloudwatch=cloudwatch,
            sns=self.client("sns"),
            backend_data=backend_data,
            account=ACCOUNT,
            region=self.config.region,
            region_name=region_name,
            period_s=self.config.period_s,
            on_transition=on_transition,
        )
        self.evaluator.start()

    def _start_outbox(self) -> None:
        from moto.ses.models import ses_backends

        def sent() -> list[Any]:
            return list(ses_backends[ACCOUNT][self.config.region].sent_messages)

        def on_email(email: SentEmail) -> None:
            self.emails.append(email)
            self.console.say(f"email to {', '.join(email.recipients)}: {email.subject!r} -> {email.path}")

        self.outbox = Outbox(self.config.state_dir / "outbox", sent, on_email)
        self._spawn("outbox", self._collect_outbox)

    def _collect_outbox(self) -> None:
        assert self.outbox is not None
        while not self._stop.wait(0.25):
            self.outbox.collect()

    def _announce(self, model_folder: Path) -> None:
        assert self.provisioned is not None and self.gateway is not None
        say = self.console.say
        say(f"moto (S3, DynamoDB, SQS, SNS, SES, CloudWatch) on {self.endpoint}")
        say(f"inference API on {self.gateway.url} serving {model_folder}")
        if self.gateway.api_key is not None:
            say(f"  ApiAuth=API_KEY: send the header x-api-key: {self.gateway.api_key}")
        for route in self.gateway.routes:
            say(f"  {route.method:<6} {self.gateway.url}{route.path}")
        for logical_id, plan in self.provisioned.functions.items():
            triggers = ", ".join(plan.describe_triggers()) or "HTTP"
            say(f"{logical_id} ({plan.spec.module}) <- {triggers}; log {self.functions[logical_id].log_path}")
        say(f"alarms evaluated locally: one template period lasts {self.config.period_s:g} s here")
        assert self.outbox is not None
        say(f"emails written to {self.outbox.folder}")

    def request_counts(self) -> dict[int, int]:
        """HTTP answers so far, by status code."""
        assert self.gateway is not None
        with self.gateway.stats.lock:
            return dict(self.gateway.stats.by_status)

    def stop(self) -> None:
        """Stop every thread and server, and restore this process's environment."""
        self._stop.set()
        if self.gateway is not None:
            self.gateway.stop()
        if self.evaluator is not None:
            self.evaluator.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.outbox is not None:
            self.outbox.collect()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for function in self.functions.values():
            function.unload()
        if self._env_cm is not None:
            self._env_cm.__exit__(None, None, None)
            self._env_cm = None
        if self._versions_cm is not None:
            self._versions_cm.__exit__(None, None, None)
            self._versions_cm = None
        uninstall_router()
