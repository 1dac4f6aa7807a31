"""Benchmark of the metrics function's work: parse, join, compute, for 100k and 1M label rows.

Each size runs several times, each run in a fresh child process, so its peak RSS is its own; the
median of the runs is recorded with every run's figures and the machine's load average (other work
shares this machine). The child builds an in-memory prediction store (one array per column, ids
looked up in a dict and answered as ``PredictionColumns``, the interface the DynamoDB store
implements) and a CSV label file in memory (97% known ids, 1% unknown, 1% rejected, 1% duplicate,
predictions spread over 24 hours), then times:

* parse: stream the bytes through ``read_labels`` (parse in batches, de-duplicate);
* join: ``join_labels`` against the store;
* compute: ``assess_join`` (the full set of metrics with bootstrap once per version, drift, the
  per-hour values, the comparison and attribution sections) and rendering the JSON and HTML reports.

Peak RSS includes the store and the label file held in memory (``rss_before_mb``), which a Lambda
invocation does not hold.

The same joined rows then go through Evidently's ``ClassificationPreset`` in ``.venv-bench/``
(installed from ``requirements/bench.txt`` on first use, never into the dev set), and the ratio is
recorded. Results: ``bench/results/metrics.json``.

Usage: ``.venv/bin/python bench/bench_metrics.py [--sizes 100000,1000000] [--repeats 5] [--skip-evidently]``
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "metrics.json"
BENCH_VENV = ROOT / ".venv-bench"
BENCH_REQUIREMENTS = ROOT / "requirements" / "bench.txt"
TARGETS = {100_000: {"seconds": 2.0}, 1_000_000: {"seconds": 10.0, "peak_rss_mb": 1536.0}}
N_CLASSES = 10
N_FEATURES = 64


def _card() -> object:
    from truthwatch.card import read_card
    from truthwatch.registry import resolve_model_dir

    return read_card(resolve_model_dir(ROOT / "artifacts" / "models" / "digits"))


class ColumnarStore:
    """An in-memory prediction store holding columns; a lookup answers with ``PredictionColumns``.

    It implements the same ``get_many`` as ``DynamoDBPredictionStore``: ids in, batches of found
    rows out, with their positions among the ids asked for. Each batch is looked up id by id in a
    dict and sliced out of the columns; nothing about the label file is known in advance.
    """

    def __init__(self, card: object, n: int, seed: int = 0, batch_size: int = 1000) -> None:
        from truthwatch.card import ModelCard

        assert isinstance(card, ModelCard)
        rng = np.random.default_rng(seed)
        self.card = card
        self.batch_size = batch_size
        self.ids = [f"0190a1b2-{i >> 16:04x}-7{i & 0xFFF:03x}-8000-{i:012d}" for i in range(n)]
        self.index = {inference_id: i for i, inference_id in enumerate(self.ids)}
        self.y_true = rng.integers(0, N_CLASSES, size=n)
        correct = rng.random(n) < 0.9
        self.y_pred = np.where(correct, self.y_true, rng.integers(0, N_CLASSES, size=n))
        logits = rng.normal(size=(n, N_CLASSES)).astype(np.float32)
        logits[np.arange(n), self.y_pred] += 3.0
        proba = np.exp(logits)
        self.proba = np.round(proba / proba.sum(axis=1, keepdims=True), 6).astype(np.float32)
        self.confidence = self.proba[np.arange(n), self.y_pred]
        self.bins = rng.integers(0, 9, size=(n, N_FEATURES), dtype=np.uint8)
        start = (datetime.now(UTC) - timedelta(hours=30)).timestamp()
        self.predicted_at = start + np.sort(rng.integers(0, 24 * 3600, size=n)).astype(np.float64)

    def get_many(self, inference_ids: Sequence[str]) -> Iterator[object]:
        from truthwatch.join import PredictionColumns

        lookup = self.index.get
        for begin in range(0, len(inference_ids), self.batch_size):
            chunk = inference_ids[begin : begin + self.batch_size]
            where = np.fromiter((lookup(i, -1) for i in chunk), dtype=np.int64, count=len(chunk))
            hit = np.flatnonzero(where >= 0)
            rows = where[hit]
            yield PredictionColumns(
                model_name=self.card.name,
                model_version=self.card.version,
                positions=hit + begin,
                label_index=self.y_pred[rows],
                confidence=self.confidence[rows],
                probabilities=self.proba[rows],
                predicted_at=self.predicted_at[rows],
                inputs_mode="binned",
                inputs=self.bins[rows],
            )


def _label_file(store: ColumnarStore, seed: int = 1) -> bytes:
    """CSV labels: every stored id once, plus 1% unknown, 1% rejected and 1% duplicate rows."""
    rng = np.random.default_rng(seed)
    n = len(store.ids)
    extra = n // 100
    lines = ["inference_id,label"]
    duplicates = set(rng.choice(n, size=extra, replace=False).tolist())
    for i, inference_id in enumerate(store.ids[: n - 2 * extra]):
        if i in duplicates:
            lines.append(f"{inference_id},{(store.y_true[i] + 1) % N_CLASSES}")
        lines.append(f"{inference_id},{store.y_true[i]}")
    lines += [f"ffffffff-0000-7000-8000-{i:012d},{i % N_CLASSES}" for i in range(extra)]
    lines += [f"{store.ids[n - extra + i]},not-a-digit" for i in range(extra)]
    return ("\n".join(lines) + "\n").encode()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(n: int, joined_out: Path | None) -> dict[str, object]:
    """Time one size in this process; optionally save the joined rows for Evidently."""
    from truthwatch.join import join_labels, read_labels
    from truthwatch.label_job import assess_join
    from truthwatch.notifications import LabelObject
    from truthwatch.report import to_html, to_json

    card = _card()
    store = ColumnarStore(card, n)
    data = _label_file(store)
    gc.collect()
    rss_before = _rss_mb()

    t0 = time.perf_counter()
    labels = read_labels(io.BytesIO(data))
    t1 = time.perf_counter()
    result = join_labels(labels, store, lambda name, version: card)  # type: ignore[arg-type, return-value]
    t2 = time.perf_counter()
    obj = LabelObject(bucket="bench", key="labels/bench.csv")
    reports, points, _ = assess_join(obj, result, datetime.now(UTC))
    for report in reports:
        to_json(report)
        to_html(report)
    t3 = time.perf_counter()

    accounting = result.accounting()
    [matched] = result.versions.values()
    if joined_out is not None:
        np.savez(joined_out, y_true=matched.y_true, y_pred=matched.y_pred, proba=matched.probabilities)
    return {
        "rows": accounting["read"],
        "matched": accounting["matched"],
        "unknown": accounting["unknown"],
        "rejected": accounting["rejected"],
        "duplicate": accounting["duplicate"],
        "balanced": accounting["balanced"],
        "prediction_hours": len(reports[0]["hours"]),
        "metric_points": len(points),
        "parse_s": round(t1 - t0, 3),
        "join_s": round(t2 - t1, 3),
        "compute_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "label_file_mb": round(len(data) / 1e6, 1),
    }


def item_conversion(n: int = 20_000) -> dict[str, object]:
    """CPU cost of the DynamoDB store per item: typed items to columns, with a client answering from memory.

    The in-memory store skips this work; with the real table every matched row is one item that
    BatchGetItem returns and the store turns into columns (network time comes on top).
    """
    from boto3.dynamodb.types import TypeSerializer

    from truthwatch.card import ModelCard
    from truthwatch.join import DynamoDBPredictionStore
    from truthwatch.records import PredictionRecord, encode_inputs

    card = _card()
    assert isinstance(card, ModelCard)
    rng = np.random.default_rng(2)
    serializer = TypeSerializer()
    inputs = encode_inputs(rng.integers(0, 17, size=(n, N_FEATURES)).astype(np.float32), "binned", card)
    proba = rng.dirichlet(np.ones(N_CLASSES), size=n).round(6)
    now = datetime.now(UTC)
    items = {}
    for i in range(n):
        record = PredictionRecord(
            f"id-{i}",
            card.name,
            card.version,
            now,
            "3",
            3,
            float(proba[i, 3]),
            tuple(proba[i].tolist()),
            "binned",
            inputs[i],
            0,
        )
        items[record.inference_id] = {k: serializer.serialize(v) for k, v in record.to_item().items()}

    class MemoryClient:
        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
            [(table, request)] = RequestItems.items()
            return {"Responses": {table: [items[k["inference_id"]["S"]] for k in request["Keys"]]}}

    store = DynamoDBPredictionStore(MemoryClient(), "predictions", workers=1)  # type: ignore[arg-type]
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        found = sum(len(answer.positions) for answer in store.get_many(list(items)))
        timings.append(time.perf_counter() - start)
    assert found == n
    seconds = float(np.median(timings))
    return {
        "items": n,
        "seconds": round(seconds, 3),
        "us_per_item": round(seconds / n * 1e6, 2),
        "estimate_1m_items_s": round(seconds / n * 1e6, 1),
        "note": "median of 3; BatchGetItem answered from memory, so network time is not included",
    }


EVIDENTLY_SCRIPT = """
import json, sys, time
import numpy as np, pandas as pd
from evidently import DataDefinition, Dataset, MulticlassClassification, Report
from evidently.presets import ClassificationPreset

data = np.load(sys.argv[1])
classes = [str(i) for i in range(data["proba"].shape[1])]
frame = pd.DataFrame(data["proba"], columns=classes)
frame["target"] = data["y_true"].astype(str)
frame["prediction"] = data["y_pred"].astype(str)
definition = DataDefinition(
    classification=[
        MulticlassClassification(target="target", prediction_labels="prediction", prediction_probas=classes)
    ]
)
start = time.perf_counter()
dataset = Dataset.from_pandas(frame, data_definition=definition)
snapshot = Report([ClassificationPreset()]).run(dataset, None)
snapshot.dict()
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _bench_python() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import evidently"], capture_output=True)
    if check.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--requirement", str(BENCH_REQUIREMENTS)],
            check=True,
        )
    return python


def _evidently(joined: Path) -> dict[str, object]:
    try:
        python = _bench_python()
        version = subprocess.run(
            [str(python), "-c", "import evidently; print(evidently.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out = subprocess.run(
            [str(python), "-c", EVIDENTLY_SCRIPT, str(joined)], capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return {
        "version": version,
        "seconds": round(json.loads(out.stdout.strip().splitlines()[-1])["seconds"], 3),
    }


TIMINGS = ("parse_s", "join_s", "compute_s", "total_s", "peak_rss_mb")


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's counts with the median of every timing and of peak RSS; each run's figures kept."""
    result = dict(runs[0])
    for name in TIMINGS:
        result[name] = round(float(np.median([float(str(r[name])) for r in runs])), 3)
    result["runs"] = [{name: r[name] for name in (*TIMINGS, "load_1min")} for r in runs]
    return result


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="runs per size; the median is recorded")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--joined", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_size(args.child, args.joined)))
        return 0

    rows = []
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            joined = Path(tmp) / f"joined-{n}.npz"
            runs = []
            for _ in range(args.repeats):
                child = subprocess.run(
                    [sys.executable, __file__, "--child", str(n), "--joined", str(joined)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                run = json.loads(child.stdout.strip().splitlines()[-1])
                run["load_1min"] = os.getloadavg()[0]
                runs.append(run)
            result = _median_run(runs)
            target = TARGETS.get(n, {})
            result["target_s"] = target.get("seconds")
            result["target_peak_rss_mb"] = target.get("peak_rss_mb")
            result["meets_targets"] = (
                target.get("seconds") is None or result["total_s"] <= target["seconds"]
            ) and (target.get("peak_rss_mb") is None or result["peak_rss_mb"] <= target["peak_rss_mb"])
            if not args.skip_evidently:
                evidently = _evidently(joined)
                result["evidently"] = evidently
                if "seconds" in evidently:
                    seconds = float(str(evidently["seconds"]))
                    result["evidently_over_compute"] = round(seconds / result["compute_s"], 2)
            rows.append(result)

    header = (
        f"{'rows':>9} {'parse s':>8} {'join s':>7} {'compute s':>9} {'total s':>8} {'target':>7} "
        f"{'peak MB':>8} {'Evidently s':>11} {'ratio':>6}"
    )
    print(header)
    for r in rows:
        evidently = r.get("evidently", {})
        print(
            f"{r['rows']:>9} {r['parse_s']:>8} {r['join_s']:>7} {r['compute_s']:>9} {r['total_s']:>8} "
            f"{r['target_s'] or '-':>7} {r['peak_rss_mb']:>8} {evidently.get('seconds', '-'):>11} "
            f"{r.get('evidently_over_compute', '-'):>6}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "metrics: parse, join against an in-memory store, compute",
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "ratio": "Evidently ClassificationPreset seconds over truthwatch compute seconds",
                "statistic": f"median of {args.repeats} runs per size, each in a fresh process; runs listed",
                "load_average_before": load_before,
                "load_average_after": _load(),
                "uptime": _uptime(),
                "results": rows,
                "dynamodb_item_conversion": item_conversion(),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
