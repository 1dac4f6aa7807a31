"""Inference handler benchmark: cold start per back end, warm latency, peak memory.

Each measurement runs the real ``lambda_handler`` on the API Gateway events in ``events/`` with
records going to an in-memory recorder (no DynamoDB), in a fresh Python process per cold start:

- cold start: from the first import of the handler module to the first answer of a one-row
  request (imports, model load and checksum, first prediction), median of several processes,
  LiteRT and TensorFlow side by side;
- warm: the handler's own time per call for one row and for 1,024 rows;
- peak RSS of the LiteRT handler process after the warm runs.

Writes ``bench/results/inference.json``. Run ``make model-bundle`` or ``make train`` first; the
model is read from ``artifacts/models/digits``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "inference.json"
COLD_RUNS = 5
WARM_ONE_ROW = 2000
WARM_BATCH = 100
BATCH_ROWS = 1024
TARGETS = {
    "cold_start_litert_s": 0.5,
    "warm_1_row_p50_ms": 0.5,
    "warm_1_row_p99_ms": 2.0,
    "warm_1024_rows_p50_ms": 15.0,
    "peak_rss_litert_mb": 200.0,
}


def child(backend: str, warm: bool) -> None:
    """Runs in the measured process: cold start, then optionally the warm loops."""
    started = time.perf_counter()
    from functions.inference import app
    from tests.events import load_event
    from truthwatch.capture import MemoryRecorder

    recorder = MemoryRecorder()
    app.use_recorder(recorder)
    context = _Context()
    event = load_event("apigw-rest-predict-gzip-base64")
    real_stdout = sys.stdout
    with open(os.devnull, "w") as sink:  # noqa: PTH123
        sys.stdout = sink
        answer = app.lambda_handler(event, context)
        cold = time.perf_counter() - started
        result: dict[str, float] = {"cold_start_s": cold}
        assert answer["statusCode"] == 200, answer
        if warm:
            result.update(_warm(app, context, recorder))
        sys.stdout = real_stdout
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    real_stdout.write(json.dumps(result) + "\n")


def _warm(app: object, context: object, recorder: object) -> dict[str, float]:
    from sklearn.datasets import load_digits

    from tests.events import load_event

    rows = load_digits().data
    one = load_event("apigw-rest-predict")
    one["body"] = json.dumps({"instances": rows[:1].astype(int).tolist()})
    batch = load_event("apigw-rest-predict")
    batch["body"] = json.dumps({"instances": rows[:BATCH_ROWS].astype(int).tolist()})
    handler = app.lambda_handler  # type: ignore[attr-defined]

    def timed(event: dict, times: int) -> list[float]:
        out = []
        for _ in range(times):
            recorder.records.clear()  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            response = handler(event, context)
            out.append((time.perf_counter() - t0) * 1000)
            assert response["statusCode"] == 200
        return sorted(out)

    timed(one, 50)
    single = timed(one, WARM_ONE_ROW)
    timed(batch, 5)
    many = timed(batch, WARM_BATCH)
    return {
        "warm_1_row_p50_ms": _pct(single, 50),
        "warm_1_row_p99_ms": _pct(single, 99),
        "warm_1024_rows_p50_ms": _pct(many, 50),
        "warm_1024_rows_p99_ms": _pct(many, 99),
    }


def _pct(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


class _Context:
    function_name = "truthwatch-InferenceFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:truthwatch-InferenceFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"


def _run(backend: str, warm: bool) -> dict[str, float]:
    env = {
        **os.environ,
        "MODEL_DIR": str(ROOT / "artifacts" / "models" / "digits"),
        "MODEL_BACKEND": backend,
        "POWERTOOLS_SERVICE_NAME": "truthwatch-inference",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("PREDICTIONS_TABLE", None)
    env.pop("DATA_BUCKET", None)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", backend, "warm" if warm else "cold"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - t0
    return figures


def main() -> int:
    """Measure, print the table, write the JSON."""
    cold = {
        backend: [_run(backend, warm=False) for _ in range(COLD_RUNS)] for backend in ("litert", "tensorflow")
    }
    warm = _run("litert", warm=True)
    litert = statistics.median(r["cold_start_s"] for r in cold["litert"])
    tensorflow = statistics.median(r["cold_start_s"] for r in cold["tensorflow"])
    figures = {
        "cold_start_litert_s": litert,
        "cold_start_tensorflow_s": tensorflow,
        "cold_start_ratio_tensorflow_to_litert": tensorflow / litert,
        "cold_process_litert_s": statistics.median(r["process_s"] for r in cold["litert"]),
        "cold_process_tensorflow_s": statistics.median(r["process_s"] for r in cold["tensorflow"]),
        "peak_rss_tensorflow_cold_mb": max(r["peak_rss_mb"] for r in cold["tensorflow"]),
        "warm_1_row_p50_ms": warm["warm_1_row_p50_ms"],
        "warm_1_row_p99_ms": warm["warm_1_row_p99_ms"],
        "warm_1024_rows_p50_ms": warm["warm_1024_rows_p50_ms"],
        "warm_1024_rows_p99_ms": warm["warm_1024_rows_p99_ms"],
        "peak_rss_litert_mb": warm["peak_rss_mb"],
    }
    print(f"{'figure':<40}{'measured':>12}{'target':>10}  ok")
    for name, value in figures.items():
        target = TARGETS.get(name)
        ok = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{name:<40}{value:>12.3f}{'' if target is None else f'{target:>10.1f}':>10}  {ok}")
    print(f"TensorFlow cold start is {figures['cold_start_ratio_tensorflow_to_litert']:.1f}x LiteRT's")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": {
            "cold_processes_per_backend": COLD_RUNS,
            "warm_1_row_calls": WARM_ONE_ROW,
            "warm_1024_row_calls": WARM_BATCH,
        },
        "targets": TARGETS,
        "figures": {k: round(v, 4) for k, v in figures.items()},
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3] == "warm")
        sys.exit(0)
    sys.exit(main())
