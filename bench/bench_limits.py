"""Limits benchmark: the largest requests and label files the functions accept, against their settings.

Every case runs the real handler in a fresh Python process, so its peak RSS is its own, and is
compared with the function's ``MemorySize`` and ``Timeout`` as ``template.yaml`` declares them
(read through ``infra.cfn``, never copied here).

Inference (``functions.inference.app``, records to an in-memory recorder, no DynamoDB):

- the largest allowed request: ``MAX_BATCH_ROWS`` (1,024) rows of 64 digits pixels, plain and
  gzip-compressed (base64, as API Gateway hands a binary body over);
- a body just under ``MAX_BODY_BYTES``: the same 1,024 rows with every number written out to a
  long decimal expansion, plain and gzip-compressed;
- one past each limit, which must be answered 413: 1,025 rows, a body one byte over the limit, and
  a gzip bomb (a few kilobytes that inflate far past the limit).

Metrics (``functions.metrics.app`` against ``moto.mock_aws`` in the same process, an S3
notification for a gzip CSV under ``labels/``):

- ``known``: a one-million-row label file whose first ``--recorded`` ids (default 100,000) are
  recorded predictions in ``PredictionsTable`` and the rest are not;
- ``unknown``: a one-million-row label file of which no id is recorded;
- ``rejected``: a one-million-row label file of three columns (about 230 bytes a row) whose header
  names no id column, so every line, the header too, is rejected and written to ``rejected/``.

The row accounting must add up to the lines of the file (asserted): 1,000,000, and 1,000,001 for
``rejected``, whose header line is a rejected row too. Two compromises keep the run within
minutes, both measured and recorded in the results:

- moto 5.2 answers ``BatchGetItem`` through its generic response serializer, about 2.7 ms per
  returned item on this machine (45 minutes for a million), so the child replaces that one
  response's encoding with moto's own ``dynamo_json_dump`` (the same JSON on the wire; no
  ``ConsumedCapacity``, which the function does not ask for, and no 16 MB response split, which
  100 prediction records never reach);
- items are put into moto's table object directly (about 0.13 ms each), not through
  ``BatchWriteItem``, and only ``--recorded`` of the million are recorded: ``--recorded 1000000``
  runs the full case (about ten minutes, and over 4 GB for moto's table).

``moto_batch_get_backend_s`` is the time spent inside that replaced response, summed over the
handler's concurrent calls (eight threads), so it can exceed the wall time.

Peak RSS of a metrics child includes moto, its tables and the label object held in the emulated
bucket, so it overstates what Lambda would hold; ``work_mb`` (peak minus the RSS once the handler
and its service are loaded) and ``import_mb`` (a process that only loads the handler) give the
estimate ``import_mb + work_mb``. Writes ``bench/results/limits.json`` with the machine's load
average: other suites share these two cores, and the timings move with the load.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import io
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "limits.json"
MODEL_DIR = ROOT / "artifacts" / "models" / "digits"
LABEL_ROWS = 1_000_000
DEFAULT_RECORDED = 100_000
INFERENCE_CALLS = 10
REGION: Final = "eu-west-1"
BUCKET = "truthwatch-data-123456789012"
PREDICTIONS = "truthwatch-predictions"
IDEMPOTENCY = "truthwatch-idempotency"
FUNCTIONS = ("InferenceFunction", "MetricsFunction")
LIMIT_VARIABLES = ("MAX_BATCH_ROWS", "MAX_BODY_BYTES")
MOTO_BATCH_GET: dict[str, float] = {"calls": 0, "seconds": 0.0}
"""BatchGetItem calls moto answered in a metrics child, and the time spent in its backend."""


def _vm_kb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Context:
    function_name = "truthwatch-Function"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:truthwatch-Function"
    memory_limit_in_mb = 1024
    aws_request_id = "bench-limits"
    log_group_name = "/aws/lambda/truthwatch-Function"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


# ----------------------------------------------------------------------------------------- inference


def _long_number(value: float, width: int) -> str:
    """``value`` written with trailing zeros to exactly ``width`` characters (same float)."""
    text = f"{value:.1f}"
    return text + "0" * (width - len(text))


def _predict_event(body: bytes, compressed: bool) -> dict[str, Any]:
    from tests.events import load_event

    event = load_event("apigw-rest-predict-gzip-base64" if compressed else "apigw-rest-predict")
    if compressed:
        event["body"] = base64.b64encode(gzip.compress(body, compresslevel=6)).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body.decode()
        event["isBase64Encoded"] = False
    return event


def _inference_bodies(max_rows: int, max_bytes: int) -> dict[str, bytes]:
    """The request bodies of every case, keyed by case name."""
    import numpy as np
    from sklearn.datasets import load_digits

    pixels = load_digits().data
    rows = np.resize(pixels, (max_rows + 1, pixels.shape[1])).astype(int).tolist()
    n_numbers = max_rows * pixels.shape[1]
    plain = json.dumps({"instances": rows[:max_rows]}, separators=(",", ":")).encode()
    # Each number widened so that the whole body lands just under the limit.
    skeleton = len(plain) - sum(len(str(v)) for row in rows[:max_rows] for v in row)
    width = (max_bytes - 1024 - skeleton) // n_numbers
    padded_rows = ",".join(
        "[" + ",".join(_long_number(v, width) for v in row) + "]" for row in rows[:max_rows]
    )
    padded = ('{"instances":[' + padded_rows + "]}").encode()
    padded += b" " * (max_bytes - len(padded))
    return {
        "max_rows": plain,
        "max_body": padded,
        "rows_over": json.dumps({"instances": rows}, separators=(",", ":")).encode(),
        "body_over": padded + b" ",
    }


def _gzip_bomb(mebibytes: int) -> bytes:
    """``mebibytes`` MiB of spaces gzip-compressed a MiB at a time (about a thousandfold smaller)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(mebibytes)) + packer.flush()


def inference_child() -> dict[str, Any]:
    """Runs in the measured process: every inference case through the real handler."""
    from functions.inference import app
    from truthwatch.capture import MemoryRecorder

    recorder = MemoryRecorder()
    app.use_recorder(recorder)
    settings = app.settings()
    context = _Context()
    bodies = _inference_bodies(settings.max_batch_rows, settings.max_body_bytes)
    bomb = _predict_event(b"", compressed=True)
    bomb["body"] = base64.b64encode(_gzip_bomb(64)).decode()

    cases: dict[str, Any] = {}
    one_row = json.dumps({"instances": [[0] * 64]}).encode()
    answer = app.lambda_handler(_predict_event(one_row, False), context)
    cases["warm_up_status"] = answer["statusCode"]
    rss_loaded = _vm_kb("VmRSS")
    for name, compressed in (
        ("max_rows", False),
        ("max_rows", True),
        ("max_body", False),
        ("max_body", True),
    ):
        event = _predict_event(bodies[name], compressed)
        times, status = [], 0
        for _ in range(INFERENCE_CALLS):
            recorder.records.clear()
            t0 = time.perf_counter()
            response = app.lambda_handler(event, context)
            times.append((time.perf_counter() - t0) * 1000)
            status = response["statusCode"]
            rows = len(json.loads(response["body"]).get("predictions", []))
        times.sort()
        cases[f"{name}{'_gzip' if compressed else ''}"] = {
            "status": status,
            "rows_answered": rows,
            "decoded_body_bytes": len(bodies[name]),
            "sent_body_bytes": len(event["body"]),
            "p50_ms": round(times[len(times) // 2], 2),
            "max_ms": round(times[-1], 2),
        }
    for name, event in (
        ("rows_over", _predict_event(bodies["rows_over"], False)),
        ("body_over", _predict_event(bodies["body_over"], False)),
        ("body_over_gzip", _predict_event(bodies["body_over"], True)),
        ("gzip_bomb", bomb),
    ):
        t0 = time.perf_counter()
        response = app.lambda_handler(event, context)
        cases[name] = {
            "status": response["statusCode"],
            "error_code": json.loads(response["body"]).get("error", {}).get("code"),
            "sent_body_bytes": len(event["body"]),
            "ms": round((time.perf_counter() - t0) * 1000, 2),
        }
    return {
        "limits": {"MAX_BATCH_ROWS": settings.max_batch_rows, "MAX_BODY_BYTES": settings.max_body_bytes},
        "cases": cases,
        "rss_after_first_answer_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


# ------------------------------------------------------------------------------------------- metrics


def _patch_moto_batch_get() -> None:
    """Answer BatchGetItem with moto's JSON dump instead of its generic (slow) serializer."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoHandler

    def batch_get_item(self: Any) -> str:
        t0 = time.perf_counter()
        responses: dict[str, list[Any]] = {}
        for table_name, request in self.body["RequestItems"].items():
            table = self.dynamodb_backend.get_table(table_name)
            key_name = table.hash_key_attr
            found = (table.get_item(DynamoType(key[key_name])) for key in request["Keys"])
            responses[table_name] = [item.attrs for item in found if item is not None]
        answer = dynamo_json_dump({"Responses": responses, "UnprocessedKeys": {}})
        MOTO_BATCH_GET["calls"] += 1
        MOTO_BATCH_GET["seconds"] += time.perf_counter() - t0
        return answer

    DynamoHandler.batch_get_item = batch_get_item  # type: ignore[method-assign, assignment]


def _ids(prefix: str, n: int) -> list[str]:
    """``n`` distinct UUIDv7-shaped ids."""
    return [f"0190a1b2-{prefix}-7{i >> 24:03x}-8000-{i:012x}" for i in range(n)]


def _fill_predictions(ids: list[str], card: Any) -> dict[str, Any]:
    """Put one prediction record per id straight into moto's table; return the labels and timing."""
    import numpy as np
    from boto3.dynamodb.types import TypeSerializer
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from sklearn.datasets import load_digits

    from truthwatch.records import PredictionRecord, encode_inputs, expiry

    rng = np.random.default_rng(0)
    n, n_classes, n_features = len(ids), len(card.class_names), len(card.input.feature_names)
    y_true = rng.integers(0, n_classes, size=n)
    y_pred = np.where(rng.random(n) < 0.9, y_true, rng.integers(0, n_classes, size=n))
    # Digits pixels binned with the card's baseline edges, as the inference function captures them.
    pixels = np.resize(load_digits().data, (n, n_features)).astype(np.float32)
    inputs = encode_inputs(pixels, "binned", card)
    start = time.time() - 24 * 3600
    serializer = TypeSerializer()
    table: Any = dynamodb_backends["123456789012"][REGION].get_table(PREDICTIONS)
    from datetime import UTC, datetime

    t0 = time.perf_counter()
    for i, inference_id in enumerate(ids):
        probabilities = [0.01] * n_classes
        probabilities[int(y_pred[i])] = 1.0 - 0.01 * (n_classes - 1)
        predicted_at = datetime.fromtimestamp(start + i * 86400 / n, UTC)
        record = PredictionRecord(
            inference_id=inference_id,
            model_name=card.name,
            model_version=card.version,
            predicted_at=predicted_at,
            label=card.class_names[int(y_pred[i])],
            label_index=int(y_pred[i]),
            confidence=probabilities[int(y_pred[i])],
            probabilities=tuple(probabilities),
            inputs_mode="binned",
            inputs=inputs[i],
            expires_at=expiry(predicted_at, 30),
        )
        wire: dict[str, Any] = {k: serializer.serialize(v) for k, v in record.to_item().items()}
        key = DynamoType(wire["inference_id"])
        table.items[key] = Item(key, None, wire)
    return {"labels": [card.class_names[int(y)] for y in y_true], "fill_s": time.perf_counter() - t0}


def _label_body(ids: list[str], labels: list[str]) -> bytes:
    """A gzip CSV label file of ``ids``; the first ``len(labels)`` get those labels, the rest '7'."""
    out = io.StringIO()
    out.write("inference_id,label\n")
    for i, inference_id in enumerate(ids):
        out.write(f"{inference_id},{labels[i] if i < len(labels) else '7'}\n")
    return gzip.compress(out.getvalue().encode(), compresslevel=6)


def _rejected_body(rows: int) -> bytes:
    """A gzip CSV of three columns, about 230 bytes a row, whose header names no inference id column.

    Compressed 10,000 rows at a time, so the 230 MB of text never sit in this process at once.
    """
    note = "scanned at the front desk; operator checked the digit against the paper form " * 2
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6) as out:
        out.write(b"request,label,comment\n")
        for start in range(0, rows, 10_000):
            block = range(start, min(start + 10_000, rows))
            out.write(
                "".join(
                    f"0190a1b2-eeee-7{i >> 24:03x}-8000-{i:012x},{i % 10},{note}{i:08d}\n" for i in block
                ).encode()
            )
    return buffer.getvalue()


def _environment() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "PREDICTIONS_TABLE": PREDICTIONS,
        "DATA_BUCKET": BUCKET,
        "IDEMPOTENCY_TABLE": IDEMPOTENCY,
        "POWERTOOLS_SERVICE_NAME": "truthwatch-metrics",
        "POWERTOOLS_METRICS_NAMESPACE": "Truthwatch",
    }


def _create_resources(card: Any) -> Any:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table, key in ((PREDICTIONS, "inference_id"), (IDEMPOTENCY, "id")):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    s3.put_object(
        Bucket=BUCKET, Key=f"models/{card.name}/{card.version}/model.json", Body=card.to_json().encode()
    )
    return s3


def _s3_event(key: str, size: int, etag: str) -> dict[str, Any]:
    from tests.events import load_event

    event = load_event("s3-object-created-labels")
    s3 = event["Records"][0]["s3"]
    s3["bucket"]["name"] = BUCKET
    s3["bucket"]["arn"] = f"arn:aws:s3:::{BUCKET}"
    s3["object"].update({"key": key, "size": size, "eTag": etag})
    return event


def metrics_child(case: str, recorded: int) -> dict[str, Any]:
    """Runs in the measured process: one label file of a million rows through the real handler.

    moto runs in this process, unless ``AWS_ENDPOINT_URL`` names a moto server (the ``rejected``
    case: moto would otherwise hold the 350 MB ``rejected/`` object here, counted as the handler's).
    """
    from moto import mock_aws

    from truthwatch.card import read_card
    from truthwatch.registry import resolve_model_dir

    os.environ.update(_environment())
    _patch_moto_batch_get()
    card = read_card(resolve_model_dir(MODEL_DIR))
    with contextlib.nullcontext() if os.environ.get("AWS_ENDPOINT_URL") else mock_aws():
        s3 = _create_resources(card)
        filled: dict[str, Any] = {"labels": [], "fill_s": 0.0}
        if case == "known":
            ids = _ids("0000", LABEL_ROWS)
            filled = _fill_predictions(ids[:recorded], card)
            body = _label_body(ids, filled["labels"])
            del ids, filled["labels"]
        elif case == "unknown":
            ids, recorded = _ids("ffff", LABEL_ROWS), 0
            body = _label_body(ids, filled["labels"])
            del ids
        else:
            recorded = 0
            body = _rejected_body(LABEL_ROWS)
        key = f"labels/limits/{case}.csv.gz"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        event = _s3_event(key, len(body), etag)
        rss_data = _vm_kb("VmRSS")

        from functions.metrics import app

        app.service()
        rss_ready = _vm_kb("VmRSS")
        t0 = time.perf_counter()
        outcome = app.lambda_handler(event, _Context())  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
        peak = _peak_mb()
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("KeyCount", 0)
        rejected_file = s3.head_object(Bucket=BUCKET, Key=f"rejected/{key}.jsonl")["ContentLength"]

    summary = outcome["processed"][0]
    counts = {k: summary[k] for k in ("read", "matched", "unknown", "rejected", "duplicate")}
    return {
        "case": case,
        "label_rows": LABEL_ROWS,
        "recorded": recorded,
        "label_object_bytes": len(body),
        "fill_s": round(float(filled["fill_s"]), 2),
        "counts": counts,
        "balanced": counts["read"] == sum(v for k, v in counts.items() if k != "read"),
        "reports_written": listed,
        "rejected_file_bytes": rejected_file,
        "data_points": summary["data_points"],
        "wall_s": round(wall, 2),
        "moto_batch_get_calls": int(MOTO_BATCH_GET["calls"]),
        "moto_batch_get_backend_s": round(MOTO_BATCH_GET["seconds"], 2),
        "handler_duration_ms": summary["duration_ms"],
        "rss_moto_and_data_mb": round(rss_data, 1),
        "rss_handler_ready_mb": round(rss_ready, 1),
        "peak_rss_mb": round(peak, 1),
        "work_mb": round(peak - rss_ready, 1),
    }


def import_child() -> dict[str, Any]:
    """Runs in the measured process: only load the metrics handler and build its service."""
    os.environ.update(_environment())
    from functions.metrics import app

    app.service()
    return {"import_mb": round(_vm_kb("VmRSS"), 1)}


# ---------------------------------------------------------------------------------------------- main


def _run(*args: str, settings: dict[str, str] | None = None) -> dict[str, Any]:
    inherited = dict(os.environ)
    for name in (
        "PREDICTIONS_TABLE",
        "DATA_BUCKET",
        "AWS_ENDPOINT_URL",
        "LAMBDA_TASK_ROOT",
        "_X_AMZN_TRACE_ID",
    ):
        inherited.pop(name, None)
    env = {
        **inherited,
        **(settings or {}),
        "MODEL_DIR": str(MODEL_DIR),
        "MODEL_BACKEND": "litert",
        "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    """A moto server in a process of its own, for the length of the block; yields its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _template_settings() -> dict[str, dict[str, int]]:
    """``MemorySize``, ``Timeout`` and the inference limits as ``template.yaml`` sets them."""
    from infra.cfn import load_template

    functions = load_template().functions()
    settings = {
        name: {key: int(functions[name].properties[key]) for key in ("MemorySize", "Timeout")}
        for name in FUNCTIONS
    }
    variables = functions["InferenceFunction"].environment
    for name in LIMIT_VARIABLES:
        settings["InferenceFunction"][name] = int(variables[name])
    return settings


def _check(inference: dict[str, Any], metrics: list[dict[str, Any]]) -> list[str]:
    """What the limits promise; every broken promise is named."""
    problems = []
    cases = inference["cases"]
    for name in ("max_rows", "max_rows_gzip", "max_body", "max_body_gzip"):
        if (
            cases[name]["status"] != 200
            or cases[name]["rows_answered"] != inference["limits"]["MAX_BATCH_ROWS"]
        ):
            problems.append(f"inference {name}: {cases[name]}")
    for name in ("rows_over", "body_over", "body_over_gzip", "gzip_bomb"):
        if cases[name]["status"] != 413:
            problems.append(f"inference {name} answered {cases[name]['status']}, expected 413")
    for run in metrics:
        lines = LABEL_ROWS + (run["case"] == "rejected")  # the header line is a rejected row there
        if run["counts"]["read"] != lines or not run["balanced"]:
            problems.append(f"metrics {run['case']}: rows do not add up to {lines}: {run['counts']}")
        if run["case"] == "rejected" and run["counts"]["rejected"] != lines:
            problems.append(f"metrics rejected: {run['counts']['rejected']} rejected of {lines} lines")
        if run["estimated_lambda_mb"] > run["memory_size_mb"]:
            problems.append(
                f"metrics {run['case']}: {run['estimated_lambda_mb']} MB estimated, MemorySize "
                f"{run['memory_size_mb']} MB"
            )
        if run["counts"]["matched"] != run["recorded"]:
            problems.append(
                f"metrics {run['case']}: matched {run['counts']['matched']}, recorded {run['recorded']}"
            )
    return problems


def _print(record: dict[str, Any]) -> None:
    settings = record["template"]
    inference = record["inference"]
    memory = settings["InferenceFunction"]["MemorySize"]
    print(f"InferenceFunction: MemorySize {memory} MB, Timeout {settings['InferenceFunction']['Timeout']} s")
    print(f"{'case':<18}{'status':>7}{'sent bytes':>12}{'decoded':>10}{'p50 ms':>9}{'max ms':>9}")
    for name, case in inference["cases"].items():
        if not isinstance(case, dict):
            continue
        print(
            f"{name:<18}{case['status']:>7}{case['sent_body_bytes']:>12}"
            f"{case.get('decoded_body_bytes', ''):>10}{case.get('p50_ms', case.get('ms')):>9}"
            f"{case.get('max_ms', ''):>9}"
        )
    print(f"peak RSS {inference['peak_rss_mb']} MB of {memory} MB")
    metrics = settings["MetricsFunction"]
    print(f"\nMetricsFunction: MemorySize {metrics['MemorySize']} MB, Timeout {metrics['Timeout']} s")
    print(
        f"{'case':<9}{'recorded':>9}{'read':>9}{'matched':>9}{'unknown':>9}{'rejected':>9}{'wall s':>8}"
        f"{'peak MB':>9}{'work MB':>9}{'est. MB':>9}"
    )
    for run in record["metrics"]:
        c = run["counts"]
        print(
            f"{run['case']:<9}{run['recorded']:>9}{c['read']:>9}{c['matched']:>9}{c['unknown']:>9}"
            f"{c['rejected']:>9}{run['wall_s']:>8}{run['peak_rss_mb']:>9}{run['work_mb']:>9}"
            f"{run['estimated_lambda_mb']:>9}"
        )
    print(f"metrics handler loaded alone: {record['metrics_import_mb']} MB")
    machine = record["machine"]
    print(f"load average: before {machine['load_average_before']}, after {machine['load_average_after']}")
    for problem in record["problems"]:
        print(f"PROBLEM: {problem}")


def main() -> int:
    """Run every case in its own process, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recorded", type=int, default=DEFAULT_RECORDED, help="recorded ids of the known file"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()

    load_before = os.getloadavg()
    template = _run("template")
    limits = {name: str(template["InferenceFunction"][name]) for name in LIMIT_VARIABLES}
    inference = _run("inference", settings=limits)
    imported = _run("import")["import_mb"]
    metrics = [_run("metrics", case, str(args.recorded)) for case in ("known", "unknown")]
    with _moto_server() as endpoint:
        metrics.append(_run("metrics", "rejected", "0", settings={"AWS_ENDPOINT_URL": endpoint}))
    load_after = os.getloadavg()
    for run in metrics:
        run["estimated_lambda_mb"] = round(imported + run["work_mb"], 1)
        run["memory_size_mb"] = template["MetricsFunction"]["MemorySize"]
        run["timeout_s"] = template["MetricsFunction"]["Timeout"]

    record = {
        "benchmark": "limits: largest requests and label files through the real handlers",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "template": template,
        "notes": {
            "metrics_known": (
                f"{LABEL_ROWS} label rows; the first {args.recorded} ids are recorded predictions, the rest "
                "unknown (moto's DynamoDB is too slow to fill and read a million items in minutes)"
            ),
            "metrics_rejected": (
                f"{LABEL_ROWS} rows of three columns (about 230 bytes each) under a header naming no id "
                "column: every line, the header too, is rejected and written to rejected/"
            ),
            "moto_batch_get_item": "answered with moto's dynamo_json_dump instead of its generic serializer",
            "moto_fill": "items put into moto's table object directly, not through BatchWriteItem",
            "peak_rss_mb": "metrics: includes moto, its tables and the label object in the same process",
            "estimated_lambda_mb": "metrics handler loaded alone plus work_mb (peak minus RSS once loaded)",
        },
        "inference": inference,
        "metrics_import_mb": imported,
        "metrics": metrics,
    }
    record["problems"] = _check(inference, metrics)
    _print(record)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 1 if record["problems"] else 0


def child(args: list[str]) -> None:
    """Run one case with the handler's stdout (logs, EMF) sent to /dev/null; figures on the real one."""
    result_fd = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if args[0] == "template":
        result: dict[str, Any] = _template_settings()
    elif args[0] == "inference":
        result = inference_child()
    elif args[0] == "import":
        result = import_child()
    else:
        result = metrics_child(args[1], int(args[2]))
    os.write(result_fd, (json.dumps(result) + "\n").encode())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
