"""Inference handler benchmark: cold start per back end, warm latency, explanations, peak memory.

Each measurement runs the real ``lambda_handler`` on the API Gateway events in ``events/`` with
records going to an in-memory recorder (no DynamoDB), in a fresh Python process per cold start:

- cold start: from the first import of the handler module to the first answer of a one-row
  request (imports, model load and checksum, first prediction, EMF and log lines), median of
  several processes, LiteRT and TensorFlow side by side;
- warm: the handler's own time per call for one row and for 1,024 rows, and for ``POST /explain``
  with 1 and 8 rows; the median of several processes' p50 and p99;
- peak RSS of the LiteRT handler process after the warm runs.

"As deployed" means tracing on: the processes run with ``LAMBDA_TASK_ROOT`` and an X-Ray trace
header set, as Lambda sets them, so Powertools enables the Tracer, the X-Ray SDK is imported and
every request opens a subsegment (sent over UDP to a daemon address nobody listens on). The
LiteRT cold start is also measured with tracing off, as in tests and the local stack. Whatever
the handler writes to stdout (log and EMF lines) goes to ``/dev/null`` at the file-descriptor
level, as a pipe read by a busy parent would make the figures depend on the parent.

Writes ``bench/results/inference.json``, with the load average before and after: other test
suites share this machine's two cores, and the figures move with the load. Run ``make train``
first; the model is read from ``artifacts/models/digits``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "inference.json"
COLD_RUNS = 7
COLD_RUNS_TENSORFLOW = 3
WARM_PROCESSES = 3
WARM_ONE_ROW = 3000
WARM_BATCH = 100
WARM_EXPLAIN = 200
BATCH_ROWS = 1024
TARGETS = {
    "cold_start_litert_s": 0.5,
    "warm_1_row_p50_ms": 0.5,
    "warm_1_row_p99_ms": 2.0,
    "warm_1024_rows_p50_ms": 15.0,
    "peak_rss_litert_mb": 200.0,
}
TRACE_HEADER = "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


def child(warm: bool) -> None:
    """Runs in the measured process: cold start, then optionally the warm loops."""
    result_fd = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    started = time.perf_counter()
    from functions.inference import app
    from tests.events import load_event
    from truthwatch.capture import MemoryRecorder

    recorder = MemoryRecorder()
    app.use_recorder(recorder)
    context = _Context()
    answer = app.lambda_handler(load_event("apigw-rest-predict-gzip-base64"), context)
    result: dict[str, Any] = {"cold_start_s": time.perf_counter() - started}
    assert answer["statusCode"] == 200, answer
    result["traced"] = "aws_xray_sdk.core" in sys.modules
    if warm:
        result.update(_warm(app, context, recorder))

    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    os.write(result_fd, (json.dumps(result) + "\n").encode())


def _warm(app: Any, context: object, recorder: Any) -> dict[str, float]:
    from sklearn.datasets import load_digits

    from tests.events import load_event

    rows = load_digits().data.astype(int)

    def event(path: str, n_rows: int) -> dict[str, Any]:
        built = load_event("apigw-rest-predict")
        built["path"] = built["requestContext"]["path"] = built["resource"] = path
        built["body"] = json.dumps({"instances": rows[:n_rows].tolist()})
        return built

    def timed(request: dict[str, Any], times: int) -> list[float]:
        out = []
        for _ in range(times):
            recorder.records.clear()
            t0 = time.perf_counter()
            response = app.lambda_handler(request, context)
            out.append((time.perf_counter() - t0) * 1000)
            assert response["statusCode"] == 200, response
        return sorted(out)

    figures: dict[str, float] = {}
    for name, path, n_rows, times in (
        ("warm_1_row", "/predict", 1, WARM_ONE_ROW),
        ("warm_1024_rows", "/predict", BATCH_ROWS, WARM_BATCH),
        ("explain_1_row", "/explain", 1, WARM_EXPLAIN),
        ("explain_8_rows", "/explain", 8, WARM_EXPLAIN // 4),
    ):
        request = event(path, n_rows)
        timed(request, max(5, times // 20))
        measured = timed(request, times)
        figures[f"{name}_p50_ms"] = _pct(measured, 50)
        figures[f"{name}_p99_ms"] = _pct(measured, 99)
    return figures


def _pct(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


class _Context:
    function_name = "truthwatch-InferenceFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:truthwatch-InferenceFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"


def _run(backend: str, warm: bool, traced: bool = True) -> dict[str, Any]:
    env = {
        **os.environ,
        "MODEL_DIR": str(ROOT / "artifacts" / "models" / "digits"),
        "MODEL_BACKEND": backend,
        "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name in ("PREDICTIONS_TABLE", "DATA_BUCKET", "POWERTOOLS_TRACE_DISABLED", "AWS_XRAY_SDK_ENABLED"):
        env.pop(name, None)
    if traced:
        env.update(
            {
                "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "inference"),
                "AWS_LAMBDA_FUNCTION_NAME": "truthwatch-InferenceFunction",
                "_X_AMZN_TRACE_ID": TRACE_HEADER,
                "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            }
        )
    else:
        for name in ("LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID"):
            env.pop(name, None)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", "warm" if warm else "cold"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - t0
    assert figures["traced"] == traced, figures
    return figures


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def main() -> int:
    """Measure, print the table, write the JSON."""
    load_before = os.getloadavg()
    litert = [_run("litert", warm=False) for _ in range(COLD_RUNS)]
    untraced = [_run("litert", warm=False, traced=False) for _ in range(COLD_RUNS)]
    tensorflow = [_run("tensorflow", warm=False) for _ in range(COLD_RUNS_TENSORFLOW)]
    warm = [_run("litert", warm=True) for _ in range(WARM_PROCESSES)]
    warm_untraced = [_run("litert", warm=True, traced=False) for _ in range(WARM_PROCESSES)]
    load_after = os.getloadavg()

    figures = {
        "cold_start_litert_s": _median(litert, "cold_start_s"),
        "cold_start_litert_untraced_s": _median(untraced, "cold_start_s"),
        "cold_start_tensorflow_s": _median(tensorflow, "cold_start_s"),
        "cold_process_litert_s": _median(litert, "process_s"),
        "cold_process_tensorflow_s": _median(tensorflow, "process_s"),
        "peak_rss_tensorflow_cold_mb": max(r["peak_rss_mb"] for r in tensorflow),
        "peak_rss_litert_mb": max(r["peak_rss_mb"] for r in warm),
    }
    figures["cold_start_ratio_tensorflow_to_litert"] = (
        figures["cold_start_tensorflow_s"] / figures["cold_start_litert_s"]
    )
    for name in ("warm_1_row", "warm_1024_rows", "explain_1_row", "explain_8_rows"):
        for q in ("p50", "p99"):
            figures[f"{name}_{q}_ms"] = _median(warm, f"{name}_{q}_ms")
    for name in ("warm_1_row", "warm_1024_rows"):
        figures[f"{name}_untraced_p50_ms"] = _median(warm_untraced, f"{name}_p50_ms")

    print(f"{'figure':<42}{'measured':>12}{'target':>10}  ok")
    for name, value in figures.items():
        target = TARGETS.get(name)
        ok = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{name:<42}{value:>12.3f}{'' if target is None else f'{target:>10.1f}':>10}  {ok}")
    print(f"TensorFlow cold start is {figures['cold_start_ratio_tensorflow_to_litert']:.1f}x LiteRT's")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "runs": {
            "cold_processes_litert": COLD_RUNS,
            "cold_processes_tensorflow": COLD_RUNS_TENSORFLOW,
            "warm_processes": WARM_PROCESSES,
            "warm_1_row_calls": WARM_ONE_ROW,
            "warm_1024_row_calls": WARM_BATCH,
            "explain_1_row_calls": WARM_EXPLAIN,
            "explain_8_row_calls": WARM_EXPLAIN // 4,
            "tracing": "on (Lambda environment emulated) except the *_untraced_* figures",
        },
        "targets": TARGETS,
        "figures": {k: round(v, 4) for k, v in figures.items()},
        "cold_start_litert_runs_s": [round(r["cold_start_s"], 4) for r in litert],
        "warm_1_row_p50_runs_ms": [round(r["warm_1_row_p50_ms"], 4) for r in warm],
        "warm_1_row_untraced_p50_runs_ms": [round(r["warm_1_row_p50_ms"], 4) for r in warm_untraced],
        "warm_1024_rows_p50_runs_ms": [round(r["warm_1024_rows_p50_ms"], 4) for r in warm],
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2] == "warm")
        sys.exit(0)
    sys.exit(main())
