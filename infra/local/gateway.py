"""HTTP on 127.0.0.1 in front of the inference handler, the way ``sam local start-api`` serves it.

Each request becomes an API Gateway REST API (v1) proxy event, the handler's proxy response
becomes the HTTP answer. Routes come from the function's ``Api`` events in ``template.yaml`` and
are matched with trailing slashes ignored, as a deployed REST API matches them: a request that
matches none is answered by the gateway itself, as API Gateway answers it (403 ``Missing
Authentication Token``), and a handler that fails or returns a malformed response gives 502
``Internal server error``. A body is read by its ``Content-Length`` or chunk by chunk
(``Transfer-Encoding: chunked``); a request whose body cannot be read that way is refused before
it is routed (:func:`read_body`), and the connection is closed after the answer. With an API key
set (``ApiAuth=API_KEY``), a matched request without that key in its ``x-api-key`` header is
refused with API Gateway's 403 ``Forbidden`` before the function is called. IAM (SigV4)
authorisation, throttling and stages are not emulated (see "Known limitations" in
``docs/local.md``).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

# API Gateway refuses payloads above 10 MB before the function sees them:
# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# Seconds a connection may send nothing before the gateway closes it.
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Route:
    """One ``Api`` event of the function: a path (``{name}`` and ``{proxy+}`` allowed) and a method."""

    path: str
    method: str

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method`` and ``path`` hit this route, else ``None``.

        Trailing slashes are ignored, as a deployed REST API ignores them when it matches a
        resource: ``POST /predict/`` reaches the ``/predict`` method, and the event keeps the
        path as sent (``path`` is ``/predict/``). Sources: LocalStack's router, validated
        against AWS ("trailing slashes are ignored in APIGW", with recorded events for
        ``/{proxy+}``), and the reports behind Powertools' issue #1552 and PR #1577.
        """
        if self.method not in ("ANY", method):
            return None
        path = path.rstrip("/") or "/"
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


class MalformedRequestError(Exception):
    """A request refused before it is routed, as API Gateway's front end refuses it.

    Parameters
    ----------
    status, message
        The answer: ``{"message": message}`` with that status; the connection is closed after it,
        since where the next request would start is unknown.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,19}")
MAX_LINE_BYTES = 65_536
"""Longest chunk-size or trailer line read from a chunked body."""


def read_body(headers: Message, stream: _Stream, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The request body: ``Content-Length`` bytes, or a ``Transfer-Encoding: chunked`` body joined.

    Raises
    ------
    MalformedRequestError
        400 for a ``Content-Length`` that is not one non-negative integer (``abc``, ``-1``, two
        that differ), for a malformed chunked body or one cut short; 413 for a body over
        ``limit`` (API Gateway's 10 MB), announced or counted, before more of it is read; 501
        for a transfer coding other than chunked.
    """
    coding = headers.get("Transfer-Encoding")
    if coding is not None:
        # RFC 9112, section 6.3: Transfer-Encoding overrides any Content-Length.
        if coding.strip().lower() != "chunked":
            raise MalformedRequestError(501, "Not Implemented")
        return _read_chunked(stream, limit)

    lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
    if not lengths:
        return b""
    if len(lengths) > 1 or not _DIGITS.fullmatch(next(iter(lengths))):
        raise MalformedRequestError(400, "Bad Request")
    length = int(lengths.pop())
    if length > limit:
        raise MalformedRequestError(413, "Request Too Long")
    body = stream.read(length)
    if len(body) < length:
        raise MalformedRequestError(400, "Bad Request")
    return body


def _read_chunked(stream: _Stream, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = _read_line(stream)
        size_text = size_line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise MalformedRequestError(400, "Bad Request")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise MalformedRequestError(413, "Request Too Long")
        chunk = stream.read(size)
        if len(chunk) < size or _read_line(stream).strip():
            raise MalformedRequestError(400, "Bad Request")
        body += chunk
    while _read_line(stream).strip():  # trailer fields, read and dropped
        pass
    return bytes(body)


def _read_line(stream: _Stream) -> bytes:
    line = stream.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
        raise MalformedRequestError(400, "Bad Request")
    return line


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


class _Server(ThreadingHTTPServer):
    """The HTTP server, quiet about clients that leave: a dropped connection is not an error here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("client %s left: %s", client_address, sys.exc_info()[1])
            return
        logger.exception("the local gateway failed on a request from %s", client_address)


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
    read_timeout_s
        A connection that sends nothing for this long is closed, mid-request too, so a client that
        stops half-way holds no thread for ever.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Sequence[Route],
        invoke: Callable[[dict[str, Any]], Any],
        stage: str = "local",
        api_key: str | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.read_timeout_s = read_timeout_s
        self.routes = list(routes) or [Route("/{proxy+}", "ANY")]
        self.invoke = invoke
        self.stage = stage
        self.api_key = api_key
        self.stats = GatewayStats()
        self._server = _Server((host, port), self._handler_class())
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
            timeout = gateway.read_timeout_s

            def _serve(self) -> None:
                try:
                    body = read_body(self.headers, self.rfile)
                except MalformedRequestError as refused:
                    response = gateway_error(refused.status, refused.message)
                    self.close_connection = True
                except TimeoutError:
                    self.close_connection = True  # the client stopped sending; nobody waits for an answer
                    return
                else:
                    response = gateway.answer(self.command, self.path, list(self.headers.items()), body)
                gateway.stats.count(response.status)
                self._write(response)

            def _write(self, response: ProxyResponse) -> None:
                try:
                    self.send_response(response.status)
                    for name, value in response.headers:
                        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(response.body)))
                    if self.close_connection:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(response.body)
                except ConnectionError:
                    self.close_connection = True  # the client left before its answer; nothing to tell it

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # http.server refuses what it cannot parse (a request line or header over 64 KiB, over
                # 100 headers) with an HTML page; API Gateway answers with a JSON message.
                self.close_connection = True
                reason = message or self.responses.get(code, ("Error",))[0]
                gateway.stats.count(code)
                self._write(gateway_error(code, reason))

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("http %s", format % args)

        return Handler
