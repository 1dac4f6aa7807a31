"""Size, accuracy and latency of each exported TFLite variant, and the cost of one explanation.

Run with ``make bench`` (after ``make train``); writes ``bench/results/variants.json`` with the
load average before and after, since other suites share the machine's cores and the figures move
with the load. The explanation figure is the integrated-gradients computation alone (one
``predict_proba`` call of 4,096 rows and the sums); ``bench/bench_inference.py`` times ``/explain``
through the handler.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from truthwatch.dataset import load_digits_split
from truthwatch.explain import integrated_gradients
from truthwatch.registry import resolve_model_dir
from truthwatch.runtime import load_runtime

MODEL_ROOT = Path("artifacts/models/digits")
RESULTS = Path(__file__).resolve().parent / "results" / "variants.json"
REPEATS = 300


def _timings_ms(func, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    func()  # warm: allocate tensors for this batch size
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 4),
    }


def main() -> int:
    """Measure every shipped variant of the LATEST export and record the figures."""
    load_before = os.getloadavg()
    folder = resolve_model_dir(MODEL_ROOT)
    split = load_digits_split()
    one, batch = split.x_heldout[:1], np.resize(split.x_heldout, (1024, 64))
    rows = []
    runtime = None
    for name, variant in load_runtime(folder).card.variants.items():
        if not variant.exported:
            rows.append({"variant": name, "bytes": variant.bytes, "shipped": False, "note": variant.note})
            continue
        runtime = load_runtime(folder, variant=name)
        accuracy = float((runtime.predict(split.x_heldout)[0] == split.y_heldout).mean())
        rows.append(
            {
                "variant": name,
                "bytes": variant.bytes,
                "shipped": True,
                "heldout_accuracy": round(accuracy, 4),
                "one_row": _timings_ms(lambda r=runtime: r.predict_proba(one), REPEATS),
                "rows_1024": _timings_ms(lambda r=runtime: r.predict_proba(batch), REPEATS // 10),
            }
        )

    float_runtime = load_runtime(folder)
    explain = _timings_ms(
        lambda: integrated_gradients(float_runtime.predict_proba, split.x_heldout[0], 0), 50
    )
    load_after = os.getloadavg()
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "model_version": float_runtime.card.version,
        "variants": rows,
        "explain_one_row_float32": explain,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"model {result['model_version']}")
    print(f"{'variant':<15}{'bytes':>8}{'accuracy':>10}{'1 row p50':>12}{'1024 p50':>12}")
    for row in rows:
        if row["shipped"]:
            print(
                f"{row['variant']:<15}{row['bytes']:>8}{row['heldout_accuracy']:>10.4f}"
                f"{row['one_row']['p50_ms']:>10.4f}ms{row['rows_1024']['p50_ms']:>10.3f}ms"
            )
        else:
            print(f"{row['variant']:<15}{row['bytes']:>8}  not shipped: {row['note']}")
    print(f"explanation of one row (float32): p50 {explain['p50_ms']:.2f} ms, p99 {explain['p99_ms']:.2f} ms")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
