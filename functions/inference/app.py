"""Inference function: ``POST /predict``, ``POST /explain``, ``GET /health`` and ``GET /model``.

Thin by design: Powertools routes the event (REST API v1 or HTTP API v2) and validates the body
against ``truthwatch.serving.PredictRequest``; the package does the rest. The model, the settings
and the AWS clients are built on first use and kept for the life of the execution environment,
so importing this module needs no environment variables and loads nothing.
"""

from __future__ import annotations

import copy
import gc
import os
import re
from functools import cache, cached_property
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from truthwatch import inference_explain, inference_metrics, serving
from truthwatch.capture import FAILURE_EVENT, LogOnlyRecorder, Recorder
from truthwatch.inference_explain import ExplainResponse
from truthwatch.inference_tracing import LazyXRayProvider
from truthwatch.serving import (
    ErrorCode,
    ErrorResponse,
    HealthResponse,
    InferenceService,
    PredictRequest,
    PredictResponse,
    RequestError,
    ServingSettings,
)
from truthwatch.telemetry import NAMESPACE

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.types import EventHandlerInstance
    from aws_lambda_powertools.utilities.typing import LambdaContext


class _Tracer(Tracer):
    # Maintenance: Tracer keeps its settings in one class-level dict shared by every Tracer of a
    # process; a dict of its own keeps this provider and auto_patch=False from reaching the
    # Tracers of other handlers imported into the same process (tests, the local stack).
    _config = copy.copy(Tracer._default_config)


logger = Logger(json_serializer=serving.log_dumps)
# The lazy provider imports the X-Ray SDK on the first traced request, never when tracing is off;
# only botocore is patched, when the first AWS client is built (see _aws_client).
tracer = _Tracer(provider=LazyXRayProvider(), auto_patch=False)
# service="" keeps Powertools from adding a `service` dimension the contract does not have.
metrics = Metrics(namespace=NAMESPACE, service="")
router = Router()  # type: ignore[no-untyped-call]

_recorder_override: Recorder | None = None


@cache
def settings() -> ServingSettings:
    """The function's settings, read from the environment once."""
    return ServingSettings.from_env(os.environ)


@cache
def service() -> InferenceService:
    """The loaded model with its recorder; built on the first request of an environment."""
    from truthwatch.runtime import load_runtime

    config = settings()
    runtime = load_runtime(config.model_dir, config.backend, config.variant)
    _publish_card(config, runtime)
    recorder = _recorder_override or _table_recorder(config)
    logger.info(
        "model loaded",
        extra={
            "model_version": runtime.card.version,
            "backend": config.backend,
            "variant": config.variant,
            "capture": config.capture_mode,
        },
    )
    loaded = InferenceService(runtime, config, recorder)
    _freeze_heap()
    return loaded


@cache
def _freeze_heap() -> None:
    # What is loaded by now (modules, model, schemas) lives as long as the environment; frozen,
    # it is no longer rescanned by the collections a thousand-row request triggers. Once per
    # process, so tests that rebuild the service do not freeze their garbage.
    gc.freeze()


def use_recorder(recorder: Recorder | None) -> None:
    """Send records to ``recorder`` instead of the table (benchmarks); ``None`` restores the table."""
    global _recorder_override
    _recorder_override = recorder
    service.cache_clear()


def _table_recorder(config: ServingSettings) -> Recorder:
    if config.predictions_table is None:
        logger.warning("PREDICTIONS_TABLE is unset: every record goes to the log as capture_failed")
        return LogOnlyRecorder()
    from truthwatch.capture import DynamoDBRecorder

    return DynamoDBRecorder(_aws_client("dynamodb"), config.predictions_table)


def _aws_client(name: str) -> Any:
    # boto3 is imported here, not at module level: the first answer of a function without a
    # table or bucket (benchmarks, the local stack's log-only mode) never needs it.
    import boto3

    tracer.patch(["botocore"])
    return boto3.client(name)  # type: ignore[call-overload]


def _publish_card(config: ServingSettings, runtime: Any) -> None:
    if config.data_bucket is None:
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        key = serving.publish_card(_aws_client("s3"), config.data_bucket, runtime.card)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("model card upload failed", extra={"bucket": config.data_bucket, "error": str(exc)})
        return
    logger.info("model card published", extra={"bucket": config.data_bucket, "key": key})


# ---- routes -----------------------------------------------------------------------------------------

_ERRORS: dict[int, OpenAPIResponse] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for status, text in (
        (400, "The body is not usable; `error.details` says where."),
        (413, "The body or the batch is over its limit."),
        (415, "The body is not JSON, or its encoding is not gzip."),
        (
            500,
            "The model produced a non-finite output from rows within its trained range "
            "(`model_output_invalid`); nothing was recorded.",
        ),
    )
}
"""Every refusal a body-taking route answers; unknown paths (404) and methods (405) belong to no route."""


@router.post(
    "/predict",
    summary="Predict a batch of rows",
    description="Rows as `instances` or TensorFlow Serving `inputs`; each row is recorded with its id.",
    responses={
        200: {
            "description": "One prediction per row",
            "content": {"application/json": {"model": PredictResponse}},
        },
        **_ERRORS,
    },
)
def predict(request: Annotated[PredictRequest, Body()]) -> Response[str]:
    """Predict, record, count, answer."""
    current = service()
    outcome = current.predict(request)
    for entry in outcome.lost:
        logger.error(FAILURE_EVENT, extra={"record": entry})
    inference_metrics.record_prediction(metrics, current.card, outcome)
    logger.info(
        "predicted",
        extra={"rows": outcome.rows, "capture_failures": len(outcome.lost), "latency_ms": outcome.latency_ms},
    )
    return Response(HTTPStatus.OK, serving.JSON_MEDIA_TYPE, serving.dumps(outcome.body))


@router.post(
    "/explain",
    summary="Explain the predicted class of a few rows",
    description=(
        "Same body as `/predict`, at most `MAX_EXPLAIN_ROWS` rows (default 8). Integrated gradients "
        "against an all-zero baseline; nothing is recorded."
    ),
    responses={
        200: {
            "description": "Per row, the predicted label and one attribution per feature",
            "content": {"application/json": {"model": ExplainResponse}},
        },
        **_ERRORS,
    },
)
def explain(request: Annotated[PredictRequest, Body()]) -> Response[str]:
    """Explain, never record."""
    outcome = inference_explain.explain(service(), request)
    logger.info(
        "explained",
        extra={
            "rows": outcome.rows,
            "over_tolerance": outcome.over_tolerance,
            "latency_ms": outcome.latency_ms,
        },
    )
    return Response(HTTPStatus.OK, serving.JSON_MEDIA_TYPE, serving.dumps(outcome.body))


@router.get(
    "/health",
    summary="Is the model loaded",
    responses={200: {"description": "Loaded", "content": {"application/json": {"model": HealthResponse}}}},
)
def health() -> dict[str, str]:
    """The served model's name, version, back end and variant."""
    return service().health()


@router.get("/model", summary="The served model card, without file checksums")
def model_card() -> dict[str, Any]:
    """The model card as ``GET /model`` serves it."""
    return service().card.public()


# ---- errors ----------------------------------------------------------------------------------------


def _refuse(error: RequestError) -> Response[str]:
    # A refusal before the first successful load is counted without model dimensions.
    card = service().card if service.cache_info().currsize else None
    inference_metrics.record_client_error(metrics, card)
    logger.info("request refused", extra={"status": int(error.status), "code": error.code})
    body = serving.dumps(error.body())
    return Response(int(error.status), serving.JSON_MEDIA_TYPE, body, headers=error.headers)


def _on_request_error(exc: RequestError) -> Response[str]:
    return _refuse(exc)


def _on_media_type(exc: RequestUnsupportedContentType) -> Response[str]:
    # _JsonBodies refuses first; should Powertools still find a media type it cannot parse,
    # the answer is the same 415, never an exception out of the handler.
    return _refuse(serving.unsupported_media_type(router.current_event.headers.get("content-type") or ""))


def _on_invalid(exc: RequestValidationError) -> Response[str]:
    return _refuse(serving.validation_error(exc.errors()))


def _on_unmatched(exc: NotFoundError) -> Response[str]:
    return _refuse(serving.unmatched_route(router.current_event.http_method, router.current_event.path))


def _on_model_output(exc: serving.ModelOutputError) -> Response[str]:
    logger.error("model output invalid", extra={"error": str(exc)})
    error = RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, ErrorCode.MODEL_OUTPUT_INVALID, str(exc))
    return Response(500, serving.JSON_MEDIA_TYPE, serving.dumps(error.body()))


_ERROR_HANDLERS: tuple[tuple[type[Exception], Any], ...] = (
    (RequestError, _on_request_error),
    (RequestUnsupportedContentType, _on_media_type),
    (RequestValidationError, _on_invalid),
    (NotFoundError, _on_unmatched),
    (serving.ModelOutputError, _on_model_output),
)


# ---- the two API Gateway event shapes --------------------------------------------------------------


class _Decoding(BaseProxyEvent):
    """Undo base64 and gzip within the body limit, and read every JSON media type as JSON."""

    # Cached: Powertools reads the headers several times per request, and the base class builds
    # a new case-insensitive copy on every read.
    @cached_property
    def headers(self) -> dict[str, str]:
        headers = super().headers
        if "content-type" in headers and serving.is_json_media_type(headers["content-type"]):
            # Powertools compares the raw header with "application/json" case-sensitively.
            headers["content-type"] = serving.JSON_MEDIA_TYPE
        return headers

    @cached_property
    def decoded_body(self) -> str | None:
        return serving.decode_body(
            self.body,
            bool(self.is_base64_encoded),
            self.headers.get("content-encoding"),
            settings().max_body_bytes,
        )


class _RestEvent(_Decoding, APIGatewayProxyEvent):
    @cached_property
    def multi_value_headers(self) -> dict[str, list[str]]:
        # Read three times per request by Powertools' validation; built once.
        return super().multi_value_headers


class _HttpEvent(_Decoding, APIGatewayProxyEventV2):
    pass


class _RestResolver(APIGatewayRestResolver):
    # Maintenance: Powertools builds the event data class in this private method; overriding it
    # is the one place to decode the body before validation parses it.
    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        return _RestEvent(event, self._json_body_deserializer)


class _HttpResolver(APIGatewayHttpResolver):
    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        return _HttpEvent(event, self._json_body_deserializer)

    # Maintenance: Powertools' REST resolver matches a path with trailing slashes through this
    # private method (/predict/ is /predict), its HTTP resolver does not; the same rule here
    # answers both payloads alike.
    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "") -> re.Pattern[str]:
        pattern: re.Pattern[str] = APIGatewayRestResolver._compile_regex(rule)
        return pattern


class _JsonBodies(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, reading a body only when it is labelled JSON, and checking
    its outer shape (``serving.check_body_shape``) before the value-by-value validation."""

    # Maintenance: Powertools picks a body parser by prefix of the raw Content-Type: a form
    # (what `curl -d` sends) is parsed into one field named after the whole body, which then
    # fails validation quoting it; "application/jsonx" is parsed as JSON; ";" raises out of the
    # handler. Overriding this private method refuses all of them with one 415 first.
    def _get_body(self, app: EventHandlerInstance) -> dict[str, Any]:
        serving.check_media_type(app.current_event.headers.get("content-type"))
        body = super()._get_body(app)
        max_rows, limit_name = _row_limit(app.context["_route"].path)
        serving.check_body_shape(body, service().card.n_features, max_rows, limit_name)
        return body


def _row_limit(path: str) -> tuple[int, str]:
    """The row limit of a body-taking route and the setting it comes from."""
    if path == "/explain":
        return settings().max_explain_rows, "MAX_EXPLAIN_ROWS"
    return settings().max_batch_rows, "MAX_BATCH_ROWS"


def _resolver(kind: type[ApiGatewayResolver]) -> ApiGatewayResolver:
    app = kind(enable_validation=True, serializer=serving.dumps, json_body_deserializer=serving.parse_json)
    app._request_validation_middleware = _JsonBodies()  # type: ignore[no-untyped-call]
    app.include_router(router)
    for exc_class, handler in _ERROR_HANDLERS:
        app.exception_handler(exc_class)(handler)
    return app


rest_app = _resolver(_RestResolver)
http_app = _resolver(_HttpResolver)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
# The response stays out of the trace: a thousand-row answer is past X-Ray's 64 KB document limit.
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer an API Gateway event: HTTP API (payload 2.0) or REST API (payload 1.0)."""
    app = http_app if event.get("version") == "2.0" else rest_app
    return app.resolve(event, context)
