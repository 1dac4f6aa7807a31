"""HTTP on 127.0.0.1 in front of the inference handler, the way ``sam local start-api`` serves it.

Each request becomes an API Gateway REST API (v1) proxy event, the handler's proxy response
becomes the HTTP answer. Routes come from the function's ``Api`` events in ``template.yaml``: a
request that matches none of them is answered by the gateway itself, as API Gateway answers it
(403 ``Missing Authentication Token``), and a handler that fails or returns a malformed response
gives 502 ``Internal server error``. With an API key set (``ApiAuth=API_KEY``), a matched request
without that key in its ``x-api-key`` header is refused with API Gateway's 403 ``Forbidden`` before
the function is called. IAM (SigV4) authorisation, throttling and stages are not emulated (see
"Known limitations" in ``docs/local.md``).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

# API Gateway refuses payloads above 10 MB before the function sees them:
# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """One ``Api`` event of the function: a path (``{name}`` and ``{proxy+}`` allowed) and a method."""

    path: str
    method: str

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method`` and ``path`` hit this route, else ``None``."""
        if self.method not in ("ANY", method):
            return None
        pattern = "^"
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("+}"):
                pattern += f"(?P<{_group(part[1:-2])}>.+)"
            elif part.startswith("{"):
                pattern += f"(?P<{_group(part[1:-1])}>[^/]+)"
            else:
                pattern += re.escape(part)
        found = re.match(pattern + "$", path)
        if found is None:
            return None
        names = re.findall(r"\{([^}+]+)\+?\}", self.path)
        return {name: found.group(_group(name)) for name in names}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


@dataclass
class ProxyResponse:
    """What goes back on the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def build_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    route: Route,
    path_parameters: dict[str, str],
    stage: str,
    source_ip: str = "127.0.0.1",
    account: str = "123456789012",
) -> dict[str, Any]:
    """An API Gateway REST API (v1) proxy event for one HTTP request.

    A body that is not UTF-8 text, or that carries a ``Content-Encoding``, is base64-encoded with
    ``isBase64Encoded`` set, as API Gateway does for binary payloads.
    """
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    single_query = dict(query)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)

    encoded = any(name.lower() == "content-encoding" for name, _ in headers)
    text: str | None = None
    if body and not encoded:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    is_base64 = bool(body) and text is None
    now = time.time()
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    return {
        "resource": route.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{parts.path}",
            "accountId": account,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": (base64.b64encode(body).decode("ascii") if is_base64 else text) if body else None,
        "isBase64Encoded": is_base64,
    }


def parse_response(result: Any) -> ProxyResponse:
    """Turn a handler's proxy result into an HTTP answer; a malformed one is API Gateway's 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return gateway_error(502, "Internal server error")
    body = result.get("body") or ""
    if not isinstance(body, str):
        return gateway_error(502, "Internal server error")
    payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")

    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    seen = {name.lower() for name, _ in headers}
    for name, value in (result.get("headers") or {}).items():
        if str(name).lower() not in seen:
            headers.append((str(name), str(value)))
    return ProxyResponse(int(result["statusCode"]), headers, payload)


def gateway_error(status: int, message: str) -> ProxyResponse:
    """An answer API Gateway gives itself, without calling the function."""
    body = json.dumps({"message": message}).encode("utf-8")
    return ProxyResponse(status, [("Content-Type", "application/json")], body)


def api_key_accepted(expected: str | None, headers: Sequence[tuple[str, str]]) -> bool:
    """Whether a request may pass: no key is required, or its ``x-api-key`` header holds the key."""
    if expected is None:
        return True
    given = next((value for name, value in headers if name.lower() == "x-api-key"), None)
    # A constant-time comparison, so the local gateway does not teach clients to guess keys by timing.
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class GatewayStats:
    """Requests answered, by status code (read by the console)."""

    by_status: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        """Count one answered request."""
        with self.lock:
            self.by_status[status] += 1

    @property
    def total(self) -> int:
        """Requests answered so far."""
        with self.lock:
            return sum(self.by_status.values())


class LocalGateway:
    """A threaded HTTP server that turns requests into proxy events for one function.

    Parameters
    ----------
    host, port
        Where to listen (port 0 picks a free one; see :attr:`port`).
    routes
        The function's ``Api`` events; empty means every path goes to the function.
    invoke
        Runs the handler on an event and returns its raw result, or raises.
    stage
        The stage name put into ``requestContext``.
    api_key
        When set, every matched route requires this value in the ``x-api-key`` header, as a REST API
        method with ``ApiKeyRequired`` does; ``None`` lets every request through.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Sequence[Route],
        invoke: Callable[[dict[str, Any]], Any],
        stage: str = "local",
        api_key: str | None = None,
    ) -> None:
        self.host = host
        self.routes = list(routes) or [Route("/{proxy+}", "ANY")]
        self.invoke = invoke
        self.stage = stage
        self.api_key = api_key
        self.stats = GatewayStats()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def answer(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> ProxyResponse:
        """The answer to one request: matched to a route, handed to the function, or refused."""
        if len(body) > MAX_PAYLOAD_BYTES:
            return gateway_error(413, "Request Too Long")
        path = urlsplit(target).path
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is None:
                continue
            if not api_key_accepted(self.api_key, headers):
                return gateway_error(403, "Forbidden")
            event = build_event(
                method, target, headers, body, route=route, path_parameters=parameters, stage=self.stage
            )
            try:
                return parse_response(self.invoke(event))
            except Exception:
                logger.exception("inference function failed")
                return gateway_error(502, "Internal server error")
        return gateway_error(403, "Missing Authentication Token")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                response = gateway.answer(self.command, self.path, list(self.headers.items()), body)
                gateway.stats.count(response.status)
                self.send_response(response.status)
                for name, value in response.headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("http %s", format % args)

        return Handler
