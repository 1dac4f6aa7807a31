"""Fuzz the inference API from its generated OpenAPI document with schemathesis.

Requests that fit the document and requests that break it (schemathesis' negative mode), plus
raw bodies no schema describes (garbage bytes, wrong or garbled media types, broken gzip and
base64), go to the handler in-process: a small WSGI shim turns each request into the API Gateway
REST event the local gateway builds (``infra.local.gateway.build_event``) and the proxy result
back into HTTP. Every answer must be below 500, conform to the document (status, media type,
body schema), and every refusal must carry the ``{"error": {"code", "message", "details"}}``
shape; a body route answers a media type other than JSON with 415, whatever the body.

``make test`` runs a small count; ``make fuzz`` sets ``TRUTHWATCH_FUZZ_EXAMPLES`` (1,000 or more)
for each of the two tests and ``TRUTHWATCH_FUZZ_RESULTS``, where the requests sent and their
statuses are written (``bench/results/fuzz.json``).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from functions.inference import app, openapi
from infra.local.gateway import Route, build_event, parse_response
from tests.functional.inference.conftest import BUCKET, REGION, TABLE, create_table, inference_context
from tests.functional.inference.test_bad_input import REFUSED_MEDIA_TYPES
from tests.functional.support import use_fake_aws

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TRUTHWATCH_FUZZ_EXAMPLES", "60"))
"""Requests per test; ``make fuzz`` raises it."""

ERROR_CODES = {400, 404, 405, 413, 415}
CATCH_ALL = Route("/{proxy+}", "ANY")


class Traffic:
    """What the shim answered, by status, for the assertions after the run."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.shape_errors: list[str] = []

    def check(self, status: int, content_type: str, body: bytes) -> None:
        """Count one answer; note it when a refusal lacks the error shape or a body is not JSON."""
        self.statuses[status] += 1
        if status >= 500:
            self.shape_errors.append(f"{status}: {body[:300]!r}")
            return
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.shape_errors.append(f"{status} body is not JSON: {body[:300]!r}")
            return
        if not content_type.startswith("application/json"):
            self.shape_errors.append(f"{status} content type {content_type!r}")
        if status >= 400 and not _has_error_shape(parsed):
            self.shape_errors.append(f"{status} without the error shape: {body[:300]!r}")


def _has_error_shape(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    error = body["error"]
    return (
        {"code", "message"} <= set(error)
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
        and bool(error["message"])
    )


def wsgi_shim(traffic: Traffic) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """A WSGI app that hands each request to the inference handler as an API Gateway REST event."""

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        target = request.full_path if request.query_string else request.path
        event = build_event(
            request.method,
            target,
            list(request.headers.items()),
            request.get_data(),
            route=CATCH_ALL,
            path_parameters={"proxy": request.path.lstrip("/")},
            stage="fuzz",
        )
        answer = parse_response(app.lambda_handler(event, inference_context()))
        headers = dict(answer.headers)
        traffic.check(answer.status, headers.get("Content-Type", ""), answer.body)
        response = WsgiResponse(answer.body, status=answer.status, headers=answer.headers)
        return response(environ, start_response)

    return application


@pytest.fixture
def served(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> Iterator[Traffic]:
    """The inference handler against moto, with its environment; yields the traffic counter."""
    use_fake_aws(
        monkeypatch,
        REGION,
        {
            "MODEL_DIR": str(model_dir),
            "PREDICTIONS_TABLE": TABLE,
            "DATA_BUCKET": BUCKET,
            "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
            # The handler's JSON lines are not under test here; keep a thousand runs quiet.
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        },
    )
    app.use_recorder(None)
    app.settings.cache_clear()
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name=REGION))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        traffic = Traffic()
        yield traffic
    app.settings.cache_clear()
    app.service.cache_clear()

    _record(request.node.name, traffic)
    if sum(traffic.statuses.values()) >= 20:
        # A run that never got a 200 or never a refusal fuzzed only one side of the API.
        assert traffic.statuses[200] > 0, traffic.statuses
        assert sum(n for status, n in traffic.statuses.items() if status in ERROR_CODES) > 0, traffic.statuses


def _record(test: str, traffic: Traffic) -> None:
    # make fuzz names a file; the figures show how many requests went through and how they ended.
    target = os.environ.get("TRUTHWATCH_FUZZ_RESULTS")
    if not target:
        return
    path = Path(target)
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results[test] = {
        "requests": sum(traffic.statuses.values()),
        "by_status": {str(k): v for k, v in sorted(traffic.statuses.items())},
        "server_errors": sum(n for status, n in traffic.statuses.items() if status >= 500),
    }
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


# A schema-violating body with more rows than the limit is refused with 413 before its values are
# read (serving.check_body_shape): a rejection too, beside schemathesis' default statuses.
REJECTIONS = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
SCHEMA = schemathesis.openapi.from_dict(
    json.loads(openapi.document()),
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    ),
)
PIXELS = st.lists(
    st.lists(st.integers(0, 16) | st.floats(0, 16, width=32), min_size=64, max_size=64),
    min_size=1,
    max_size=8,
)


def _with_rows(case: Any, rows: list[list[float]]) -> Any:
    # The document does not say a row holds 64 numbers, so schema-valid bodies are nearly always
    # refused; these cases put rows of the right length in, to reach the model as well.
    case.body = {"instances": rows}
    return case


CASES = st.one_of(
    SCHEMA.as_strategy(GenerationMode.POSITIVE),
    SCHEMA.as_strategy(GenerationMode.NEGATIVE),
    st.builds(_with_rows, SCHEMA["/predict"]["POST"].as_strategy(GenerationMode.POSITIVE), PIXELS),
)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES < 200,
)
@given(case=CASES)
def test_schema_cases_get_documented_answers_and_no_5xx(served: Traffic, case: Any) -> None:
    shim = wsgi_shim(served)

    response = case.call(app=shim)

    assert response.status_code < 500, response.text
    case.validate_response(response, checks=CHECKS, additional_checks=[negative_data_rejection])
    assert served.shape_errors == []


# ---- bodies no schema describes ---------------------------------------------------------------------

ROW = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] * 8
BODY_ROUTES = {("POST", "/predict"), ("POST", "/predict/")}
"""Where a body is read, so a media type other than JSON must be a 415."""


def _bodies() -> st.SearchStrategy[tuple[dict[str, str], bytes]]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=30,
    )
    plain = {"Content-Type": "application/json"}
    return st.one_of(
        st.tuples(st.just(plain), st.binary(max_size=2000)),
        st.tuples(st.just(plain), json_values.map(lambda v: json.dumps(v).encode())),
        st.tuples(
            st.just(plain),
            st.lists(st.lists(st.floats(width=64), max_size=70), max_size=4).map(
                lambda rows: json.dumps({"instances": rows}).encode()
            ),
        ),
        st.tuples(
            st.sampled_from(
                [
                    *({"Content-Type": kind} for kind in REFUSED_MEDIA_TYPES),
                    {"Content-Type": "APPLICATION/JSON; charset=utf-8"},
                    {"Content-Type": "application/vnd.api+json"},
                    {"Content-Type": "application/json", "Content-Encoding": "br"},
                    {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                    {},
                ]
            ),
            st.sampled_from(
                [
                    json.dumps({"instances": [ROW]}).encode(),
                    gzip.compress(json.dumps({"instances": [ROW]}).encode()),
                    gzip.compress(b"x" * 100)[:40],
                    b'{"instances": [[NaN]]}',
                    b"\xff\xfe\x00garbage",
                ]
            ),
        ),
    )


def _every_media_type_not_json(test: Any) -> Any:
    # Explicit examples: a short derandomized run may draw none of them on a body route, nor a
    # request that succeeds (Hypothesis draws constants from the project's own modules, so any
    # change to them reshuffles the sample); the valid one keeps the "some 200" check meaningful.
    body = json.dumps({"instances": [ROW]}).encode()
    test = example(
        method="POST", path="/predict", body=({"Content-Type": "application/json"}, body), base64_wrap=False
    )(test)
    for kind in REFUSED_MEDIA_TYPES:
        test = example(
            method="POST", path="/predict", body=({"Content-Type": kind}, body), base64_wrap=False
        )(test)
    return test


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES < 200,
)
@_every_media_type_not_json
@given(
    # Weighted towards POST /predict, where the bodies matter.
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(["/predict"] * 6 + ["/health", "/model", "/predict/", "/nope", "/predict%00"]),
    body=_bodies(),
    base64_wrap=st.booleans(),
)
def test_raw_requests_get_a_json_answer_with_the_error_shape(
    served: Traffic, method: str, path: str, body: tuple[dict[str, str], bytes], base64_wrap: bool
) -> None:
    headers, payload = body
    event = build_event(
        method,
        path,
        list(headers.items()),
        payload,
        route=CATCH_ALL,
        path_parameters={"proxy": path.lstrip("/")},
        stage="fuzz",
    )
    if base64_wrap and payload and not event["isBase64Encoded"]:
        event["body"] = base64.b64encode(payload).decode("ascii")
        event["isBase64Encoded"] = True

    answer = parse_response(app.lambda_handler(event, inference_context()))
    served.check(answer.status, dict(answer.headers).get("Content-Type", ""), answer.body)

    assert answer.status == 200 or answer.status in ERROR_CODES, answer.body[:300]
    assert served.shape_errors == []
    if (method, path) in BODY_ROUTES and headers.get("Content-Type") in REFUSED_MEDIA_TYPES:
        assert (answer.status, orjson.loads(answer.body)["error"]["code"]) == (415, "unsupported_media_type")
