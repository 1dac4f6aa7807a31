"""Worst bodies benchmark: the costliest requests within ``MAX_BODY_BYTES``, against the Timeout.

A body's cost is not its size: a 6 MiB body of three million numbers where rows belong once
made the handler build one validation error per number, 35 s in process (46 s through the local
stack), past the function's 29 s ``Timeout``. This script builds the bodies that cost the most
per byte, each filled to just under ``MAX_BODY_BYTES`` decoded, and times the real
``lambda_handler`` on them, plain and gzip-compressed (base64, as API Gateway hands a binary
body over; a plain body that large is refused by Lambda's 6 MB request limit before the handler
runs, so gzip is how such a body reaches it):

- rows in the wrong shape: a flat list of numbers as ``instances``, ``inputs`` and a named input,
  on ``/predict`` and ``/explain``; a JSON array of numbers as the whole body;
- wrong values in rows: ``MAX_BATCH_ROWS`` rows (``MAX_EXPLAIN_ROWS`` on ``/explain``) of nulls,
  empty strings, empty arrays or empty objects; rows of numbers far too long;
- wrong keys: hundreds of thousands of unknown fields, or of names under ``inputs``;
- wrong ids: millions of numbers as ``inference_ids``, or ``MAX_BATCH_ROWS`` ids of 6 KB;
- gzip members: 1,024 rows of zeros sent as one stored gzip member per byte, 200,000 members in
  the 4.4 MB of gzip that fit in Lambda's 6 MB event once base64-encoded;
- for scale, the largest accepted request (1,024 rows of digits, each number padded so the body
  is just under the limit) and its ``/explain`` counterpart.

Every case runs in one warm process with records going to an in-memory recorder; each is timed
``CALLS`` times and its slowest call is compared with one tenth of the ``Timeout`` that
``template.yaml`` declares (read through ``infra.cfn``). Writes
``bench/results/worst_bodies.json`` with the load average: other suites share this machine's
cores, and the timings move with the load. Run ``make train`` first.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "worst_bodies.json"
MODEL_DIR = ROOT / "artifacts" / "models" / "digits"
CALLS = 3
BUDGET_SHARE = 0.1
"""A worst case may take at most this share of the function's Timeout."""


def _filled(max_bytes: int, prefix: bytes, item: bytes, suffix: bytes) -> bytes:
    """``prefix`` + as many comma-separated ``item`` as fit in ``max_bytes`` + ``suffix``."""
    count = (max_bytes - len(prefix) - len(suffix) + 1) // (len(item) + 1)
    return prefix + b",".join([item] * count) + suffix


def _rows(
    max_bytes: int, n_rows: int, item: bytes, prefix: bytes = b'{"instances":[', suffix: bytes = b"]}"
) -> bytes:
    """``n_rows`` equal rows of ``item``, as long as they can be within ``max_bytes``."""
    per_row = (max_bytes - len(prefix) - len(suffix)) // n_rows - 3
    row = b"[" + b",".join([item] * ((per_row + 1) // (len(item) + 1))) + b"]"
    return prefix + b",".join([row] * n_rows) + suffix


def _keys(max_bytes: int, prefix: bytes, value: bytes, suffix: bytes) -> bytes:
    """An object of distinct short keys, each holding ``value``, filling ``max_bytes``."""
    entries, size, i = [], len(prefix) + len(suffix), 0
    while True:
        entry = b'"%x":' % i + value
        if size + len(entry) + 1 > max_bytes:
            return prefix + b",".join(entries) + suffix
        entries.append(entry)
        size += len(entry) + 1
        i += 1


def _long_ids(max_bytes: int, n_ids: int) -> bytes:
    """One row and ``n_ids`` ids (as many as rows are allowed), each as long as the limit lets it be."""
    prefix, suffix = b'{"instances":[[0]],"inference_ids":[', b"]}"
    length = (max_bytes - len(prefix) - len(suffix)) // n_ids - 3
    return prefix + b",".join([b'"' + b"a" * length + b'"'] * n_ids) + suffix


def _largest_accepted(max_bytes: int, n_rows: int) -> bytes:
    """``n_rows`` digits, every number padded with zeros so that the body is just under the limit."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data.astype(int)[:n_rows].tolist()
    width = (max_bytes - 64 - 3 * n_rows) // (n_rows * 64) - 1
    rows = ",".join("[" + ",".join(f"{v}.".ljust(width, "0") for v in row) + "]" for row in pixels)
    return ('{"instances":[' + rows + "]}").encode()


def cases(max_bytes: int, max_rows: int, max_explain: int) -> dict[str, tuple[str, bytes]]:
    """Every body, keyed by case name, with the path it is sent to."""
    built: dict[str, tuple[str, Callable[[], bytes]]] = {
        "flat_instances": ("/predict", lambda: _filled(max_bytes, b'{"instances":[', b"0", b"]}")),
        "flat_inputs": ("/predict", lambda: _filled(max_bytes, b'{"inputs":[', b"0", b"]}")),
        "flat_named_input": ("/predict", lambda: _filled(max_bytes, b'{"inputs":{"pixels":[', b"0", b"]}}")),
        "flat_instances_explain": ("/explain", lambda: _filled(max_bytes, b'{"instances":[', b"0", b"]}")),
        "array_body": ("/predict", lambda: _filled(max_bytes, b"[", b"0", b"]")),
        "rows_of_nulls": ("/predict", lambda: _rows(max_bytes, max_rows, b"null")),
        "rows_of_empty_strings": ("/predict", lambda: _rows(max_bytes, max_rows, b'""')),
        "rows_of_empty_arrays": ("/predict", lambda: _rows(max_bytes, max_rows, b"[]")),
        "rows_of_empty_objects": ("/predict", lambda: _rows(max_bytes, max_rows, b"{}")),
        "named_rows_of_empty_arrays": (
            "/predict",
            lambda: _rows(max_bytes, max_rows, b"[]", b'{"inputs":{"pixels":[', b"]}}"),
        ),
        "long_rows_of_numbers": ("/predict", lambda: _rows(max_bytes, max_rows, b"0")),
        "rows_of_nulls_explain": ("/explain", lambda: _rows(max_bytes, max_explain, b"null")),
        "rows_of_empty_arrays_explain": ("/explain", lambda: _rows(max_bytes, max_explain, b"[]")),
        "long_rows_of_numbers_explain": ("/explain", lambda: _rows(max_bytes, max_explain, b"0")),
        "unknown_fields": ("/predict", lambda: _keys(max_bytes, b"{", b"0", b"}")),
        "named_inputs": ("/predict", lambda: _keys(max_bytes, b'{"inputs":{', b"[]", b"}}")),
        "ids_of_numbers": (
            "/predict",
            lambda: _filled(max_bytes, b'{"instances":[[0]],"inference_ids":[', b"0", b"]}"),
        ),
        "long_ids": ("/predict", lambda: _long_ids(max_bytes, max_rows)),
        "largest_accepted": ("/predict", lambda: _largest_accepted(max_bytes, max_rows)),
        "largest_accepted_explain": ("/explain", lambda: _largest_accepted(max_bytes, max_explain)),
    }
    return {name: (path, make()) for name, (path, make) in built.items()}


class _Context:
    function_name = "truthwatch-InferenceFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:truthwatch-InferenceFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "bench-worst-bodies"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def _one_byte_members(body: bytes) -> bytes:
    """``body`` as one stored gzip member per byte (21 bytes each): the most members per body."""
    return b"".join(gzip.compress(body[i : i + 1], compresslevel=0, mtime=0) for i in range(len(body)))


def _event(path: str, body: bytes, compressed: bool, packed: bytes | None = None) -> dict[str, Any]:
    from tests.events import load_event

    event = load_event("apigw-rest-predict-gzip-base64" if compressed else "apigw-rest-predict")
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    if compressed:
        event["body"] = base64.b64encode(packed or gzip.compress(body, compresslevel=6)).decode()
    else:
        event["body"] = body.decode()
    event["isBase64Encoded"] = compressed
    return event


def child() -> dict[str, Any]:
    """Runs in the measured process: every case through the real handler, ``CALLS`` times each."""
    from functions.inference import app
    from truthwatch.capture import MemoryRecorder

    recorder = MemoryRecorder()
    app.use_recorder(recorder)
    settings = app.settings()
    context = _Context()
    bodies = cases(settings.max_body_bytes, settings.max_batch_rows, settings.max_explain_rows)
    warm_up = _event("/predict", json.dumps({"instances": [[0] * 64]}).encode(), compressed=False)
    assert app.lambda_handler(warm_up, context)["statusCode"] == 200

    figures: dict[str, Any] = {}
    # Lambda takes at most 6 MB of event, about 4.4 MB of gzip once base64-encoded: 1,024 rows
    # of zeros as one-byte members are 200,000 members, 4.1 MB.
    rows = json.dumps({"instances": [[0] * 64] * settings.max_batch_rows}).encode()
    runs = [(name, path, body, False, None) for name, (path, body) in bodies.items()]
    runs += [(name + "_gzip", path, body, True, None) for name, (path, body) in bodies.items()]
    runs.append(("gzip_one_byte_members", "/predict", rows, True, _one_byte_members(rows)))
    for name, path, body, compressed, packed in sorted(runs, key=lambda run: run[0]):
        event = _event(path, body, compressed, packed)
        times, answer = [], {}
        for _ in range(CALLS):
            recorder.records.clear()
            t0 = time.perf_counter()
            answer = app.lambda_handler(event, context)
            times.append((time.perf_counter() - t0) * 1000)
        error = json.loads(answer["body"]).get("error", {})
        figures[name] = {
            "path": path,
            "status": answer["statusCode"],
            "code": error.get("code"),
            "decoded_bytes": len(body),
            "sent_bytes": len(event["body"]),
            "p50_ms": round(sorted(times)[len(times) // 2], 1),
            "max_ms": round(max(times), 1),
        }
    return {
        "limits": {
            "MAX_BODY_BYTES": settings.max_body_bytes,
            "MAX_BATCH_ROWS": settings.max_batch_rows,
            "MAX_EXPLAIN_ROWS": settings.max_explain_rows,
        },
        "cases": figures,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _timeout_s() -> int:
    from infra.cfn import load_template

    return int(load_template().functions()["InferenceFunction"].properties["Timeout"])


def main() -> int:
    """Run the cases in a fresh process, print the table, write the JSON; 1 if a case is over budget."""
    sys.path.insert(0, str(ROOT))
    timeout_s = _timeout_s()
    env = {
        **os.environ,
        "MODEL_DIR": str(MODEL_DIR),
        "MODEL_BACKEND": "litert",
        "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name in ("PREDICTIONS_TABLE", "DATA_BUCKET", "LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID"):
        env.pop(name, None)
    load_before = os.getloadavg()
    done = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        return 1
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()

    budget_ms = timeout_s * 1000 * BUDGET_SHARE
    worst = max(measured["cases"].items(), key=lambda item: item[1]["max_ms"])
    share = f"{BUDGET_SHARE:.0%} of the {timeout_s} s Timeout"
    problems = [
        f"{name}: {case['max_ms']} ms is over {budget_ms:.0f} ms ({share})"
        for name, case in measured["cases"].items()
        if case["max_ms"] > budget_ms
    ]
    print(f"{'case':<36}{'path':<10}{'status':>7}{'code':>22}{'sent':>10}{'p50 ms':>9}{'max ms':>9}")
    for name, case in measured["cases"].items():
        print(
            f"{name:<36}{case['path']:<10}{case['status']:>7}{case['code'] or '':>22}"
            f"{case['sent_bytes']:>10}{case['p50_ms']:>9}{case['max_ms']:>9}"
        )
    print(f"worst: {worst[0]} {worst[1]['max_ms']} ms; Timeout {timeout_s} s")
    print(f"peak RSS {measured['peak_rss_mb']} MB")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    for problem in problems:
        print(f"PROBLEM: {problem}")

    record = {
        "benchmark": "worst bodies within MAX_BODY_BYTES through the real inference handler",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "timeout_s": timeout_s,
        "budget_ms": budget_ms,
        "calls_per_case": CALLS,
        "worst_case": {"name": worst[0], "max_ms": worst[1]["max_ms"]},
        **measured,
        "problems": problems,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        result_fd = os.dup(1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        outcome = child()
        os.write(result_fd, (json.dumps(outcome) + "\n").encode())
        sys.exit(0)
    sys.exit(main())
