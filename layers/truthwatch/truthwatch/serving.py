"""Serving predictions over HTTPS: settings, request decoding and checks, predict, record, answer.

The inference handler stays thin: Powertools routes the API Gateway event, validates the body
against :class:`PredictRequest` (which is also where the OpenAPI document's schemas come from),
and hands it to :meth:`InferenceService.predict`. Everything that can be wrong with a request
becomes a :class:`RequestError`, which carries the HTTP status and the
``{"error": {"code", "message", "details"}}`` body, so no bad input ever reaches a 500.

Body decoding happens before JSON parsing, in :func:`decode_body`: base64 (``isBase64Encoded``),
then ``Content-Encoding: gzip`` with a bounded decompressor, so a small compressed body that
inflates past ``MAX_BODY_BYTES`` stops at the limit with a 413 instead of filling memory. JSON is
parsed by orjson, which refuses ``NaN`` and ``Infinity`` tokens (Python's json accepts them) and is
several times faster on the thousand-row batches the API allows.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http import HTTPStatus
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from truthwatch.capture import Recorder, ScoredBatch, build_records, failure_entry
from truthwatch.card import ModelCard
from truthwatch.errors import TruthwatchError
from truthwatch.ids import MAX_ID_LENGTH, id_problems, new_ids
from truthwatch.quantize import VARIANT_FILES
from truthwatch.records import PROBABILITY_DIGITS, CaptureMode, parse_capture_mode
from truthwatch.runtime import BACKENDS, DEFAULT_VARIANT, BackendName, ModelRuntime

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
ACCEPTED_MEDIA_TYPES = (JSON_MEDIA_TYPE, "application/*+json")
"""What a body may be labelled: JSON, or a structured syntax suffix ``+json`` (RFC 6839)."""
_JSON_MEDIA_TYPE = re.compile(r"application/(?:json|[a-z0-9][a-z0-9!#$&^_.+-]*\+json)")
MAX_DETAILS = 10
"""Error answers list at most this many problems: enough to fix a request, never a huge body."""
MAX_QUOTED = 64
"""Longest piece of a request (a header, a path, a field name) an error message quotes."""

ROUTES: dict[str, tuple[str, ...]] = {
    "/predict": ("POST",),
    "/explain": ("POST",),
    "/health": ("GET",),
    "/model": ("GET",),
}
"""Every path the API serves and its methods, so an unmatched request can be told 404 from 405."""


class ErrorCode(StrEnum):
    """Every ``error.code`` the inference function answers with; docs/inference.md lists each."""

    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    WRONG_SHAPE = "wrong_shape"
    RAGGED_ROWS = "ragged_rows"
    WRONG_ROW_LENGTH = "wrong_row_length"
    EMPTY_BATCH = "empty_batch"
    MISSING_ROWS = "missing_rows"
    AMBIGUOUS_BODY = "ambiguous_body"
    INVALID_INPUTS = "invalid_inputs"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    INVALID_INFERENCE_IDS = "invalid_inference_ids"
    INVALID_BASE64 = "invalid_base64"
    INVALID_GZIP = "invalid_gzip"
    INVALID_ENCODING = "invalid_encoding"
    TOO_MANY_ROWS = "too_many_rows"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MODEL_OUTPUT_INVALID = "model_output_invalid"


class RequestError(TruthwatchError):
    """A request the API refuses; becomes ``{"error": {"code", "message", "details"}}``.

    Parameters
    ----------
    status
        The HTTP status of the answer (a 4xx).
    code
        A stable, machine-readable name of the problem (:class:`ErrorCode`).
    message
        What was received and what was expected, in words.
    details
        Structured specifics (positions, limits), at most :data:`MAX_DETAILS` entries.
    headers
        Extra response headers (``Allow`` on a 405).
    """

    def __init__(
        self,
        status: HTTPStatus,
        code: ErrorCode,
        message: str,
        details: Sequence[object] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)[:MAX_DETAILS]
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


@dataclass(frozen=True)
class ServingSettings:
    """The inference function's configuration, read once per execution environment."""

    model_dir: Path = Path("/opt/model")
    backend: BackendName = "litert"
    variant: str = DEFAULT_VARIANT
    capture_mode: CaptureMode = "binned"
    ttl_days: int = 30
    max_batch_rows: int = 1024
    max_explain_rows: int = 8
    max_body_bytes: int = 6_291_456
    predictions_table: str | None = None
    data_bucket: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServingSettings:
        """Settings from environment variables (docs/contracts.md); unset ones keep their default.

        Raises
        ------
        ValueError
            When a variable holds a value outside its allowed set or range; the message names it.
        """
        backend = env.get("MODEL_BACKEND", "litert").strip().lower()
        if backend not in BACKENDS:
            raise ValueError(f"MODEL_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        return cls(
            model_dir=Path(env.get("MODEL_DIR", str(cls.model_dir))),
            backend=backend,
            variant=_variant(env.get("MODEL_VARIANT", DEFAULT_VARIANT), backend),
            capture_mode=parse_capture_mode(env.get("CAPTURE_INPUTS", "binned")),
            ttl_days=_positive_int(env, "CAPTURE_TTL_DAYS", cls.ttl_days),
            max_batch_rows=_positive_int(env, "MAX_BATCH_ROWS", cls.max_batch_rows),
            max_explain_rows=_positive_int(env, "MAX_EXPLAIN_ROWS", cls.max_explain_rows),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            predictions_table=env.get("PREDICTIONS_TABLE") or None,
            data_bucket=env.get("DATA_BUCKET") or None,
        )


def _variant(text: str, backend: BackendName) -> str:
    variant = text.strip().lower() or DEFAULT_VARIANT
    if variant not in VARIANT_FILES:
        raise ValueError(f"MODEL_VARIANT must be one of {', '.join(VARIANT_FILES)}, got {text!r}")
    if backend != "litert" and variant != DEFAULT_VARIANT:
        # The TensorFlow back end serves the float32 Keras model; a quantized variant there
        # would be a setting that silently does nothing.
        raise ValueError(f"MODEL_VARIANT {variant!r} needs MODEL_BACKEND litert, got {backend!r}")
    return variant


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


# ---- the request body ---------------------------------------------------------------------------

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A JSON number: strict, so ``"1.5"``, ``true`` and ``null`` are refused instead of coerced."""
StrictRows = list[list[Number]]
NamedRows = dict[str, StrictRows]


_NUMBERS = frozenset((int, float))
"""What a JSON number parsed by orjson can be (it has already refused ``NaN`` and ``Infinity``)."""
MORE_PROBLEMS = "more_problems"
"""Type of the one validation error that counts the problems a check found but did not list."""


def _all_numbers(value: Any) -> bool:
    """Whether ``value`` is a list of lists of JSON numbers, in one C-level pass over the types."""
    if type(value) is list and all(type(row) is list for row in value):
        return set(map(type, chain.from_iterable(value))) <= _NUMBERS
    return False


def _check_rows(value: Any) -> list[list[float]]:
    """Accept a list of lists of JSON numbers with one C-level pass over the element types.

    Pydantic checks a thousand-row batch element by element in about 3 ms; collecting the set
    of element types takes a fraction of that. Anything else is refused with the first
    :data:`MAX_DETAILS` problems located (``instances.3.7``) and a count of the rest (see
    :func:`_row_problems`), never with one error per value.
    """
    if _all_numbers(value):
        return value  # type: ignore[no-any-return]
    listed, total = _row_problems(value)
    raise _invalid("rows", listed, total)


def _check_inputs(value: Any) -> list[list[float]] | dict[str, list[list[float]]]:
    """``inputs`` checked as the form its JSON type says: rows (an array) or named rows (an object).

    One validator rather than a union: pydantic validates a union against every member and
    reports each member's errors under a location naming the member's schema, so an object
    would be blamed for not being an array. Here an array is checked as rows and an object as
    named rows, and the errors are located by positions and names only (``inputs.pixels.0.3``).
    """
    if type(value) is dict:
        listed: list[InitErrorDetails] = []
        total = 0
        for name, rows in value.items():
            if not _all_numbers(rows):
                found, count = _row_problems(rows, (name,))
                listed += found[: MAX_DETAILS - len(listed)]
                total += count
        if total:
            raise _invalid("inputs", listed, total)
        return value
    if type(value) is list:
        return _check_rows(value)
    raise PydanticCustomError(
        "rows_type", "Input should be a list of rows, or an object naming one list of rows"
    )


def _row_problems(value: Any, prefix: tuple[str | int, ...] = ()) -> tuple[list[InitErrorDetails], int]:
    """The first :data:`MAX_DETAILS` problems of a list of rows, located, and how many there are.

    The problems are pydantic's own (``list_type`` for a row that is not a list, ``float_type``
    for a value that is not a number), so they read as its strict validation would. Each row is
    counted in one C-level pass; only rows with a problem are walked, and only until the list is
    full, so a body of millions of wrong values costs one pass, not one error object per value.
    """
    if type(value) is not list:
        return [InitErrorDetails(type="list_type", loc=prefix, input=value)], 1
    listed: list[InitErrorDetails] = []
    total = 0
    for i, row in enumerate(value):
        if type(row) is not list:
            total += 1
            if len(listed) < MAX_DETAILS:
                listed.append(InitErrorDetails(type="list_type", loc=(*prefix, i), input=row))
            continue
        wrong = len(row) - sum(map(_NUMBERS.__contains__, map(type, row)))
        total += wrong
        for j, item in enumerate(row if wrong and len(listed) < MAX_DETAILS else ()):
            if type(item) not in _NUMBERS:
                listed.append(InitErrorDetails(type="float_type", loc=(*prefix, i, j), input=item))
                if len(listed) == MAX_DETAILS:
                    break
    return listed, total


def _invalid(title: str, listed: list[InitErrorDetails], total: int) -> ValidationError:
    """A validation error of the ``listed`` problems, and one :data:`MORE_PROBLEMS` entry for the rest."""
    unlisted = total - len(listed)
    if unlisted > 0:
        more = PydanticCustomError(MORE_PROBLEMS, "{count} more problems not listed", {"count": unlisted})
        listed = [*listed, InitErrorDetails(type=more, loc=(), input=None)]
    return ValidationError.from_exception_data(title, listed)


Rows = Annotated[StrictRows, PlainValidator(_check_rows, json_schema_input_type=StrictRows)]
"""Rows of numbers: the schema of :data:`StrictRows`, checked by :func:`_check_rows`."""
Inputs = Annotated[
    StrictRows | NamedRows, PlainValidator(_check_inputs, json_schema_input_type=StrictRows | NamedRows)
]
"""``inputs``: rows, or one named list of rows; checked by :func:`_check_inputs`."""
InferenceId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[A-Za-z0-9._:-]+$")]


class PredictRequest(BaseModel):
    """Body of ``POST /predict``: rows as ``instances`` (row form) or ``inputs`` (columnar form)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    instances: Rows | None = Field(
        default=None, description="Rows of numbers, each as long as the model card's input (64 for digits)."
    )
    inputs: Inputs | None = Field(
        default=None,
        description="TensorFlow Serving's columnar form: the batch tensor, or one named input holding it.",
    )
    inference_ids: list[InferenceId] | None = Field(
        default=None, description="One unique id per row; generated (UUIDv7) when absent."
    )

    def __repr__(self) -> str:
        # Powertools formats route arguments into a debug message whatever the log level; the
        # default repr of a thousand-row batch costs more than predicting it, and holds raw inputs.
        rows = self.instances if self.instances is not None else self.inputs
        return f"PredictRequest(rows={len(rows) if rows is not None else 0})"

    __str__ = __repr__


class Prediction(BaseModel):
    """The answer for one row."""

    inference_id: str
    label: str
    confidence: float = Field(description="Probability of the predicted label.")
    probabilities: list[float] = Field(description="One probability per class, in `class_names` order.")


class PredictResponse(BaseModel):
    """Body of a successful ``POST /predict``."""

    model_name: str
    model_version: str
    class_names: list[str]
    predictions: list[Prediction]


class HealthResponse(BaseModel):
    """Body of ``GET /health``."""

    status: str
    model_name: str
    model_version: str
    backend: str
    variant: str = Field(description="The TFLite variant served: float32, dynamic_range or full_integer.")


class ErrorInfo(BaseModel):
    """What went wrong."""

    code: ErrorCode
    message: str
    details: list[Any]


class ErrorResponse(BaseModel):
    """Body of every 4xx answer."""

    error: ErrorInfo


# ---- decoding --------------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type`` value (parameters dropped)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` labels the body as JSON.

    Accepted: no header at all, ``application/json`` and ``application/<name>+json``, in any
    casing and with any parameters (``Application/JSON; charset=utf-8``). A header that is
    present names a media type or is refused: ``;``, an empty value, ``application/xjson`` and
    ``application/x-www-form-urlencoded`` (what ``curl -d`` sends) are not JSON.
    """
    if content_type is None:
        return True
    return _JSON_MEDIA_TYPE.fullmatch(media_type(content_type)) is not None


def check_media_type(content_type: str | None) -> None:
    """Refuse a body not labelled JSON (see :func:`is_json_media_type`) with a 415.

    Raises
    ------
    RequestError
        415 ``unsupported_media_type``, quoting the header received (at most
        :data:`MAX_QUOTED` characters) and the media types accepted.
    """
    if not is_json_media_type(content_type):
        raise unsupported_media_type(content_type or "")


def unsupported_media_type(content_type: str) -> RequestError:
    """The 415 for a ``Content-Type`` that is not JSON."""
    received = quote(content_type)
    accepted = " or ".join(ACCEPTED_MEDIA_TYPES)
    missing = "" if media_type(content_type) else " names no media type and"
    return RequestError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {received!r}{missing} is not supported; send {accepted} (parameters allowed)",
        [{"received": received, "accepted": list(ACCEPTED_MEDIA_TYPES)}],
    )


def quote(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters (marked with an ellipsis), for an error message."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def decode_body(body: str | None, is_base64: bool, content_encoding: str | None, max_bytes: int) -> str:
    """The request body as text: base64 and gzip undone, at most ``max_bytes`` once decoded.

    Raises
    ------
    RequestError
        400 when base64, gzip or UTF-8 do not decode; 413 when the decoded body exceeds
        ``max_bytes``; 415 for a content encoding other than gzip or identity.
    """
    if not body:
        return ""
    raw = _from_base64(body) if is_base64 else body.encode("utf-8")

    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        raw = _gunzip(raw, max_bytes)
    elif encoding != "identity":
        raise RequestError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.UNSUPPORTED_CONTENT_ENCODING,
            f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding",
        )

    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, ErrorCode.INVALID_ENCODING, f"body is not UTF-8 (byte {exc.start})"
        ) from None


def _from_base64(body: str) -> bytes:
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_BASE64,
            "body is marked base64-encoded but does not decode",
        ) from None


_ZERO_PADDING = re.compile(rb"\x00*")
_FIRST_CHUNK = 1024
"""Compressed bytes fed to a member's decompressor first; doubled while the member needs more."""


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Every gzip member of ``data``, inflated within ``max_bytes``, as ``gzip.decompress`` reads them.

    A gzip body may be several members one after the other (RFC 1952, section 2.2), with zero
    bytes between them; anything else after a member is refused, never dropped. Each member's
    output is bounded by what is left of ``max_bytes`` (plus one byte, to tell "at the limit"
    from "over it"), so a gzip bomb costs at most ``max_bytes + 1`` bytes of memory.
    """
    view = memoryview(data)
    parts: list[bytes] = []
    size = pos = 0
    while True:
        inflated, pos = _inflate_member(view, pos, max_bytes - size, len(parts), max_bytes)
        parts.append(inflated)
        size += len(inflated)
        padding = _ZERO_PADDING.match(data, pos)
        pos = padding.end() if padding else pos
        if pos == len(data):
            return b"".join(parts)


def _inflate_member(view: memoryview, pos: int, room: int, index: int, max_bytes: int) -> tuple[bytes, int]:
    """The member starting at ``pos``, at most ``room`` bytes once inflated, and where the next one starts.

    ``index`` counts the members before this one; ``max_bytes`` is the whole body's limit, named
    in the 413.

    The input goes in chunks that double while the member needs more: the decompressor copies
    what follows the member's end (``unused_data``), and with chunks about the member's size that
    copy stays about its size too, so a body of a hundred thousand tiny members is one pass over
    it, not one copy of the rest of the body per member.
    """
    inflater = zlib.decompressobj(wbits=31)
    parts: list[bytes] = []
    produced, chunk = 0, _FIRST_CHUNK
    while not inflater.eof:
        piece = view[pos : pos + chunk]
        if not piece:
            which = f": its member {index + 1} does not end" if index else ""
            raise RequestError(
                HTTPStatus.BAD_REQUEST, ErrorCode.INVALID_GZIP, f"gzip body is truncated{which}"
            )
        try:
            parts.append(inflater.decompress(piece, room - produced + 1))
        except zlib.error as exc:
            raise _not_gzip(index, pos, exc) from None
        produced += len(parts[-1])
        if produced > room or inflater.unconsumed_tail:
            raise _too_large(max_bytes)
        pos += len(piece) - len(inflater.unused_data)
        chunk *= 2
    return b"".join(parts), pos


def _not_gzip(index: int, pos: int, exc: zlib.error) -> RequestError:
    if index == 0:
        message = f"body is marked gzip but does not decompress ({exc})"
    else:
        message = (
            f"body is marked gzip but the bytes after its gzip member {index} (from byte {pos}) are not "
            f"another gzip member ({exc}); send one gzip stream, or members one after the other"
        )
    return RequestError(HTTPStatus.BAD_REQUEST, ErrorCode.INVALID_GZIP, message)


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        ErrorCode.BODY_TOO_LARGE,
        f"decoded body exceeds {max_bytes} bytes; send fewer rows per request",
        [{"limit_bytes": max_bytes}],
    )


_NON_JSON_NUMBERS = ("NaN", "Infinity")
"""Tokens Python's json writes for non-finite floats; orjson refuses them, as JSON has no such numbers."""
_JSON_HINTS = {
    "unexpected end of data": "the body ends before its JSON does",
    "UTF-8 byte order mark (BOM) is not supported": "send the JSON without a byte order mark",
    "no low surrogate in string": (
        "a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one; send the text as UTF-8"
    ),
    "depth limit exceeded": "arrays and objects may nest at most 1024 deep; rows need two",
}
"""What a caller can do about some of orjson's messages, keyed by them."""


def parse_json(text: str | bytes) -> Any:
    """Parse strict JSON: ``NaN``, ``Infinity`` and other non-JSON tokens are refused.

    Raises
    ------
    RequestError
        400 ``invalid_json``: orjson's description of the first fault (what it found and, where
        it can tell, what it expected), its line, column and position, and what to do about it
        when that is known. The note that NaN and Infinity are not JSON numbers is added only
        when such a token stands at the fault.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_JSON,
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{_json_hint(exc)}",
            [{"position": exc.pos}],
        ) from None


def _json_hint(exc: orjson.JSONDecodeError) -> str:
    # Maintenance: keyed by orjson's messages (3.x); a message it words differently gets no hint.
    at_fault = exc.doc[exc.pos : exc.pos + len("Infinity")]
    if isinstance(at_fault, bytes):
        at_fault = at_fault.decode("ascii", "replace")
    if at_fault.startswith(_NON_JSON_NUMBERS):
        return " (NaN and Infinity are not JSON numbers; send finite numbers)"
    hint = _JSON_HINTS.get(exc.msg)
    return f" ({hint})" if hint else ""


def dumps(value: Any) -> str:
    """Serialise an answer; the service never puts NaN or infinity into one (see ``predict``)."""
    return orjson.dumps(value).decode("utf-8")


def log_dumps(value: Any) -> str:
    """Serialise a log record for Powertools Logger: orjson, unknown types as ``str``."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")


def validation_error(errors: Sequence[Mapping[str, Any]]) -> RequestError:
    """Turn Powertools' (pydantic's) validation errors into a 400, without echoing the input.

    Each detail gives a location (field names and positions), pydantic's problem text and its
    error type, for the first :data:`MAX_DETAILS` problems; a :data:`MORE_PROBLEMS` entry counts
    problems a check found without listing them, so the message's "(and N more)" counts every
    problem found. Pydantic's ``input`` is dropped, field names the schema does not know are quoted
    only when short and plain (see :func:`_location`), and every text is bounded, so the answer
    stays small whatever the body held.
    """
    listed = [err for err in errors if err.get("type") != MORE_PROBLEMS]
    unlisted = sum(
        int((err.get("ctx") or {}).get("count", 0)) for err in errors if err.get("type") == MORE_PROBLEMS
    )
    details = [
        {
            "location": _location(err.get("loc", ())),
            "problem": quote(str(err.get("msg", "")), 2 * MAX_QUOTED),
            "type": quote(str(err.get("type", "")), MAX_QUOTED),
        }
        for err in listed[:MAX_DETAILS]
    ]
    first = details[0] if details else {"location": "body", "problem": "invalid"}
    total = len(listed) + unlisted
    more = f" (and {total - 1} more)" if total > 1 else ""
    return RequestError(
        HTTPStatus.BAD_REQUEST,
        ErrorCode.INVALID_BODY,
        f"{first['location']}: {first['problem']}{more}",
        details,
    )


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-\[\](),]{1,48}")
"""A location part quoted as is: field names, the names under ``inputs`` and short plain keys."""


def _location(loc: Sequence[object]) -> str:
    # Powertools prefixes the body parameter's name; "body.instances.3.7" reads best without it.
    # A key the caller chose is part of the body: a long or unusual one becomes "<key>".
    parts = [
        str(p) if isinstance(p, int) or _PLAIN_KEY.fullmatch(str(p)) else "<key>"
        for p in loc
        if p not in ("request",)
    ]
    return quote(".".join(parts) or "body", 2 * MAX_QUOTED)


def unmatched_route(method: str, path: str) -> RequestError:
    """404 for a path the API does not serve, 405 (with the allowed methods) for a wrong method.

    Trailing slashes are ignored, as the resolvers ignore them when routing (``/predict/`` is
    ``/predict``). A method the path allows never gets a 405: should routing miss it anyway, the
    answer is a 404 naming the method and path.
    """
    allowed = ROUTES.get(path.rstrip("/") or "/")
    if allowed is None or method in allowed:
        served = ", ".join(f"{' '.join(methods)} {route}" for route, methods in ROUTES.items())
        return RequestError(
            HTTPStatus.NOT_FOUND,
            ErrorCode.NOT_FOUND,
            f"no route {method} {quote(path)!r}; the API serves {served}",
        )
    return RequestError(
        HTTPStatus.METHOD_NOT_ALLOWED,
        ErrorCode.METHOD_NOT_ALLOWED,
        f"{method} is not allowed on {quote(path)}; use {', '.join(allowed)}",
        [{"allowed": list(allowed)}],
        headers={"Allow": ", ".join(allowed)},
    )


# ---- the outer shape, before validation ------------------------------------------------------------

_FIELDS = ("instances", "inputs", "inference_ids")
"""The fields of :class:`PredictRequest`; a test keeps them equal."""
_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    int: "a number",
    float: "a number",
}


def check_body_shape(body: Any, n_features: int, max_rows: int, limit_name: str = "MAX_BATCH_ROWS") -> None:
    """Refuse a parsed body by its outer shape, before its values are validated one by one.

    Validation collects one error per wrong value, and a 6 MiB body holds three million of
    them: building those took tens of seconds. These checks cost time in proportion to the
    keys and rows, not the values, and leave validation a body whose errors are bounded: at
    most ``max_rows`` rows, each a list (whose values :func:`_check_rows` reports ten at a
    time), at most ``max_rows`` ids, the known fields only. A body that is not an object, or a
    field of the wrong type, is left to validation, which reports it in one error.

    Raises
    ------
    RequestError
        400 ``invalid_body`` for fields the schema does not know (the first
        :data:`MAX_DETAILS` listed, all counted); 413 ``too_many_rows`` for more than
        ``max_rows`` rows (``limit_name`` is the setting, named in the message); 400
        ``wrong_shape`` when rows are not all lists (a flat list of numbers, for one); 400
        ``invalid_inputs`` for an ``inputs`` object that names other than one input; 400
        ``invalid_inference_ids`` for more ids than ``max_rows``.
    """
    if type(body) is not dict:
        return
    unknown = [key for key in body if key not in _FIELDS]
    if unknown:
        raise _unknown_fields(unknown)

    for field_name in ("instances", "inputs"):
        value, where = body.get(field_name), field_name
        if field_name == "inputs" and type(value) is dict:
            value, where = _only_input(value)
        if type(value) is list:
            _check_row_list(value, where, n_features, max_rows, limit_name)

    ids = body.get("inference_ids")
    if type(ids) is list and len(ids) > max_rows:
        reason = f"{len(ids)} inference ids for at most {max_rows} rows ({limit_name}); send one per row"
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_INFERENCE_IDS,
            f"inference_ids: {reason}",
            [{"index": None, "reason": reason}],
        )


def _unknown_fields(unknown: Sequence[str]) -> RequestError:
    errors: list[dict[str, Any]] = [
        {"loc": ("body", key), "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        for key in unknown[:MAX_DETAILS]
    ]
    if len(unknown) > MAX_DETAILS:
        errors.append({"type": MORE_PROBLEMS, "ctx": {"count": len(unknown) - MAX_DETAILS}})
    return validation_error(errors)


def _only_input(named: dict[str, Any]) -> tuple[Any, str]:
    if len(named) != 1:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_INPUTS,
            f"the model has one input; `inputs` names {len(named)}",
        )
    name, rows = next(iter(named.items()))
    return rows, _location(("inputs", name))


def _check_row_list(rows: list[Any], where: str, n_features: int, max_rows: int, limit_name: str) -> None:
    if len(rows) > max_rows:
        raise _too_many_rows(len(rows), max_rows, limit_name)
    if all(type(row) is list for row in rows):
        return

    expected = f"a list of rows, each a list of {n_features} numbers: shape (n, {n_features})"
    kinds = [
        (i, _JSON_TYPES.get(type(row), "a value")) for i, row in enumerate(rows) if type(row) is not list
    ]
    if len(kinds) == len(rows) and all(kind == "a number" for _, kind in kinds):
        received = f"({len(rows)},)"
        problem = f"it is a flat list of {len(rows)} numbers, shape {received}; send one row as [[...]]"
        details: list[dict[str, Any]] = [{"expected": f"(n, {n_features})", "received": received}]
    else:
        more = f" (and {len(kinds) - 1} more items that are not lists)" if len(kinds) > 1 else ""
        problem = f"item {kinds[0][0]} is {kinds[0][1]}{more}"
        details = [{"row": i, "received": kind.split(" ")[-1]} for i, kind in kinds[:MAX_DETAILS]]
    raise RequestError(
        HTTPStatus.BAD_REQUEST, ErrorCode.WRONG_SHAPE, f"`{where}` must be {expected}; {problem}", details
    )


def _too_many_rows(rows: int, max_rows: int, limit_name: str) -> RequestError:
    return RequestError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        ErrorCode.TOO_MANY_ROWS,
        f"{rows} rows exceed the limit of {max_rows} per request ({limit_name}); split the batch",
        [{"rows": rows, "limit": max_rows}],
    )


# ---- predicting -----------------------------------------------------------------------------------


def request_rows(
    request: PredictRequest, card: ModelCard, max_rows: int, limit_name: str = "MAX_BATCH_ROWS"
) -> npt.NDArray[np.float32]:
    """The batch a validated request carries, as float32 of shape ``(n, n_features)``.

    ``limit_name`` is the setting behind ``max_rows``, named in the 413 message.

    Raises
    ------
    RequestError
        400 for both or neither of ``instances`` and ``inputs``, an empty batch, ragged rows,
        rows of the wrong length or values beyond float32; 413 for more than ``max_rows`` rows.
    """
    rows = _pick_rows(request)
    expected = card.n_features
    if not rows:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, ErrorCode.EMPTY_BATCH, "the batch holds no rows; send at least one"
        )
    if len(rows) > max_rows:
        raise _too_many_rows(len(rows), max_rows, limit_name)

    lengths = set(map(len, rows))
    if lengths != {expected}:
        wrong = [{"row": i, "length": len(row)} for i, row in enumerate(rows) if len(row) != expected]
        kind = ErrorCode.RAGGED_ROWS if len(lengths) > 1 else ErrorCode.WRONG_ROW_LENGTH
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            kind,
            f"every row must hold {expected} numbers (shape (n, {expected}), features "
            f"{card.input.feature_names[0]}..{card.input.feature_names[-1]}); "
            f"row {wrong[0]['row']} holds {wrong[0]['length']}",
            wrong,
        )

    with np.errstate(over="ignore"):
        batch = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(batch).all():
        bad = np.argwhere(~np.isfinite(batch))[:MAX_DETAILS]
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.VALUE_OUT_OF_RANGE,
            "a value is beyond the float32 range (about 3.4e38)",
            [{"row": int(r), "column": int(c)} for r, c in bad],
        )
    return batch


def _pick_rows(request: PredictRequest) -> list[list[float]]:
    if request.instances is not None and request.inputs is not None:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.AMBIGUOUS_BODY,
            "send either `instances` (row form) or `inputs` (columnar form), not both",
        )
    if request.instances is not None:
        return request.instances
    if isinstance(request.inputs, dict):
        if len(request.inputs) != 1:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                ErrorCode.INVALID_INPUTS,
                f"the model has one input; `inputs` names {len(request.inputs)}",
            )
        return next(iter(request.inputs.values()))
    if request.inputs is not None:
        return request.inputs
    raise RequestError(
        HTTPStatus.BAD_REQUEST, ErrorCode.MISSING_ROWS, "the body needs `instances` or `inputs`"
    )


def request_ids(request: PredictRequest, n_rows: int) -> list[str]:
    """The caller's inference ids, checked, or new UUIDv7 ids.

    Raises
    ------
    RequestError
        400 ``invalid_inference_ids`` when the count is off, an id is malformed, or ids repeat.
    """
    if request.inference_ids is None:
        return new_ids(n_rows)
    problems = id_problems(request.inference_ids, n_rows)
    if problems:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_INFERENCE_IDS,
            f"inference_ids: {problems[0]['reason']}",
            problems,
        )
    return list(request.inference_ids)


@dataclass
class PredictOutcome:
    """What one ``POST /predict`` produced: the answer, the lost records and the figures to publish."""

    body: dict[str, Any]
    rows: int
    class_counts: dict[str, int]
    mean_confidence: float
    latency_ms: float
    lost: list[dict[str, Any]] = field(default_factory=list)
    """``capture_failed`` payloads, one per record the table did not take."""


class ModelOutputError(TruthwatchError):
    """The model answered with a non-finite probability; the request cannot be answered honestly."""


def check_model_output(
    output: npt.NDArray[np.floating[Any]], rows: npt.NDArray[np.float32], card: ModelCard
) -> None:
    """Refuse a non-finite model output, as the caller's fault or as the model's.

    A row whose output is not finite is the caller's when it holds a value outside the range
    the model was trained on (``card.input.value_range``): a dynamic-range quantized model, for
    one, overflows from about 1e37. When every such row is outside that range, the answer is a
    400 naming the rows, by index only. A non-finite output from a row inside the range is the
    model's fault, a 500.

    Parameters
    ----------
    output
        The model's output, shape ``(n, k)``: probabilities, or attributions.
    rows
        The rows it came from, shape ``(n, n_features)``.

    Raises
    ------
    RequestError
        400 ``value_out_of_range``.
    ModelOutputError
        When a row within the trained range gives a non-finite output.
    """
    broken = np.flatnonzero(~np.isfinite(output).all(axis=1))
    if broken.size == 0:
        return
    low, high = card.input.value_range
    outside = ((rows[broken] < low) | (rows[broken] > high)).any(axis=1)
    if not outside.all():
        raise ModelOutputError(
            f"the model returned a non-finite output for {int((~outside).sum())} rows within its "
            f"trained range {low:g}..{high:g}"
        )
    shown = ", ".join(str(int(r)) for r in broken[:MAX_DETAILS])
    more = f" and {broken.size - MAX_DETAILS} more" if broken.size > MAX_DETAILS else ""
    raise RequestError(
        HTTPStatus.BAD_REQUEST,
        ErrorCode.VALUE_OUT_OF_RANGE,
        f"{'rows' if broken.size > 1 else 'row'} {shown}{more} {'hold' if broken.size > 1 else 'holds'} "
        "values outside what the model can compute (its output for them is not finite); the model "
        f"was trained on values {low:g}..{high:g}",
        [{"row": int(r)} for r in broken],
    )


class InferenceService:
    """A loaded model with its settings and recorder: turns requests into answers and records.

    Parameters
    ----------
    runtime
        The loaded model.
    settings
        Limits and capture settings.
    recorder
        Where records go (:class:`~truthwatch.capture.DynamoDBRecorder` in Lambda).
    clock
        Current UTC time; replaced in tests.
    """

    def __init__(
        self,
        runtime: ModelRuntime,
        settings: ServingSettings,
        recorder: Recorder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.card = runtime.card
        self.settings = settings
        self.recorder = recorder
        self._clock = clock
        self._class_names = list(self.card.class_names)

    def health(self) -> dict[str, str]:
        """Body of ``GET /health``."""
        return {
            "status": "ok",
            "model_name": self.card.name,
            "model_version": self.card.version,
            "backend": self.runtime.backend_name,
            "variant": self.settings.variant,
        }

    def predict(self, request: PredictRequest) -> PredictOutcome:
        """Check the batch, predict, record each row, and build the answer.

        Raises
        ------
        RequestError
            When the batch or the ids are unusable (see :func:`request_rows`, :func:`request_ids`).
            400 ``value_out_of_range`` too when rows outside the trained range make the model's
            output non-finite (see :func:`check_model_output`).
        ModelOutputError
            When rows within the trained range get a non-finite probability.
        """
        started = time.perf_counter()
        rows = request_rows(request, self.card, self.settings.max_batch_rows)
        ids = request_ids(request, len(rows))

        raw = self.runtime.predict_proba(rows)
        if not np.isfinite(raw).all():
            check_model_output(raw, rows, self.card)
        proba = raw.astype(np.float64).round(PROBABILITY_DIGITS)
        scored = ScoredBatch.from_proba(proba)

        records = build_records(
            ids,
            self.card,
            proba,
            rows,
            self.settings.capture_mode,
            self._clock(),
            self.settings.ttl_days,
            scored,
        )
        lost = self.recorder.record(records)
        return self._outcome(ids, scored, [failure_entry(r) for r in lost], started)

    def _outcome(
        self, ids: list[str], scored: ScoredBatch, lost: list[dict[str, Any]], started: float
    ) -> PredictOutcome:
        names = self._class_names
        labels = [names[i] for i in scored.label_index]
        predictions = [
            {"inference_id": key, "label": label, "confidence": conf, "probabilities": probs}
            for key, label, conf, probs in zip(
                ids, labels, scored.confidence, scored.probabilities, strict=True
            )
        ]
        body = {
            "model_name": self.card.name,
            "model_version": self.card.version,
            "class_names": names,
            "predictions": predictions,
        }
        return PredictOutcome(
            body=body,
            rows=len(ids),
            class_counts=dict(Counter(labels)),
            mean_confidence=math.fsum(scored.confidence) / len(ids),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            lost=lost,
        )


def publish_card(s3: S3Client, bucket: str, card: ModelCard) -> str:
    """Upload the served model card to ``models/<name>/<version>/model.json``; return the key.

    The metrics function reads class names and baselines from there (docs/contracts.md). The
    caller decides what a failure means; the inference function logs it and keeps serving.
    """
    key = f"models/{card.name}/{card.version}/model.json"
    s3.put_object(Bucket=bucket, Key=key, Body=card.to_json().encode("utf-8"), ContentType=JSON_MEDIA_TYPE)
    return key
