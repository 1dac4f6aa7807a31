"""The per-file, per-version report: strict JSON, and a self-contained HTML page built from it.

Both land in the data bucket at ``reports/<model version>/<YYYY-MM-DD>/<label object name>.json``
and ``.html``, where the date is the UTC day the file was processed and the name is the label key
without its ``labels/`` prefix. A file with no matched row gets one report under the version
``none``, so its row accounting is written down too. The HTML page needs no network: styles are
inline and every chart is plain HTML.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any

from truthwatch.records import format_time

REPORT_VERSION = 1
UNMATCHED_VERSION = "none"
LABELS_PREFIX = "labels/"

UNDEFINED_POLICY = (
    "A metric undefined for these rows (no matched rows, one class only for ROC AUC, zero division in a "
    "per-class value) is omitted with its reason; averages are taken over the classes whose value is "
    "defined. No value is ever NaN or infinite."
)


def report_key(model_version: str | None, processed_at: datetime, label_key: str, suffix: str) -> str:
    """Where a report goes: ``reports/<version>/<date>/<label key without labels/><suffix>``."""
    name = label_key[len(LABELS_PREFIX) :] if label_key.startswith(LABELS_PREFIX) else label_key
    version = model_version or UNMATCHED_VERSION
    return f"reports/{version}/{processed_at.strftime('%Y-%m-%d')}/{name}{suffix}"


def rejected_key(label_key: str) -> str:
    """Where the rejected rows of a label object go: ``rejected/<label key>.jsonl``."""
    return f"rejected/{label_key}.jsonl"


def build_report(
    *,
    source: dict[str, Any],
    processed_at: datetime,
    model: dict[str, Any] | None,
    rows: dict[str, Any],
    quality: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    hours: list[dict[str, Any]],
    publication: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the report document (every part is plain JSON data)."""
    return {
        "report_version": REPORT_VERSION,
        "source": source,
        "processed_at": format_time(processed_at),
        "model": model,
        "rows": rows,
        "quality": quality,
        "drift": drift,
        "hours": hours,
        "publication": publication,
        "undefined_metric_policy": UNDEFINED_POLICY,
    }


def to_json(report: dict[str, Any]) -> bytes:
    """Strict JSON: raises ``ValueError`` rather than write NaN or infinity."""
    return (json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;
color:#1d2430;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dde6}
.muted{color:#5b6575}.tiles{display:flex;flex-wrap:wrap;gap:.75rem}
.tile{border:1px solid #d8dde6;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.tile b{display:block;font-size:1.3rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #d8dde6;padding:.25rem .5rem;text-align:right}
th{background:#f3f5f8}td.l,th.l{text-align:left}
.bar{height:.7rem;background:#3b6fd8;border-radius:2px}.barbox{width:12rem;background:#eef1f6;border-radius:2px}
.warn{color:#9a5b00}
"""


def to_html(report: dict[str, Any]) -> str:
    """Render the report as one self-contained HTML page."""
    model = report.get("model") or {}
    title = f"{model.get('name', 'no model')} {model.get('version', '')}".strip()
    source = report["source"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>truthwatch report: {escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Model quality report: {escape(title)}</h1>",
        f"<p class='muted'>s3://{escape(source['bucket'])}/{escape(source['key'])}, processed "
        f"{escape(report['processed_at'])}</p>",
        _summary(report),
        _accounting(report["rows"]),
        _confusion(report.get("quality")),
        _per_class(report.get("quality")),
        _drift(report.get("drift")),
        _hours(report["hours"], report["publication"]),
        f"<h2>Undefined metrics</h2><p>{escape(report['undefined_metric_policy'])}</p>",
        _omitted(report.get("quality")),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _number(value: object, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _summary(report: dict[str, Any]) -> str:
    quality = report.get("quality") or {}
    metrics = quality.get("metrics", {})
    drift = report.get("drift") or {}
    tiles = [
        ("matched rows", report["rows"].get("matched_this_version", 0)),
        ("accuracy", metrics.get("accuracy_score")),
        ("constant baseline", metrics.get("constant_accuracy_score")),
        ("macro F1", metrics.get("f1_macro_score")),
        ("ROC AUC (OvR)", metrics.get("roc_auc_ovr_score")),
        ("log loss", metrics.get("log_loss")),
        ("max feature PSI", drift.get("feature_psi_max")),
        ("prediction PSI", drift.get("prediction_psi")),
        ("mean confidence", drift.get("mean_confidence")),
    ]
    body = "".join(
        f"<div class='tile'><span class='muted'>{escape(n)}</span><b>{_number(v)}</b></div>" for n, v in tiles
    )
    bootstrap = quality.get("bootstrap")
    note = ""
    if bootstrap:
        note = (
            f"<p class='muted'>Bootstrap ({bootstrap['resamples']} resamples): accuracy &plusmn; "
            f"{bootstrap['accuracy_score_std']:.4f}, macro F1 &plusmn; {bootstrap['f1_macro_score_std']:.4f} "
            "(one standard deviation)</p>"
        )
    return f"<h2>Summary</h2><div class='tiles'>{body}</div>{note}"


def _accounting(rows: dict[str, Any]) -> str:
    lines = [
        ("rows read", rows["read"]),
        ("matched (all versions)", rows["matched"]),
        ("matched (this version)", rows.get("matched_this_version", 0)),
        ("unknown inference id", rows["unknown"]),
        ("rejected", rows["rejected"]),
        ("duplicate (overridden by a later row)", rows["duplicate"]),
    ]
    table = "".join(f"<tr><td class='l'>{escape(n)}</td><td>{_number(v)}</td></tr>" for n, v in lines)
    reasons = "".join(
        f"<tr><td class='l'>{escape(reason)}</td><td>{count}</td></tr>"
        for reason, count in rows.get("rejected_reasons", {}).items()
    )
    error = rows.get("file_error")
    extra = f"<p class='warn'>Reading stopped early: {escape(error)}</p>" if error else ""
    if reasons:
        extra += f"<table><tr><th class='l'>rejected because</th><th>rows</th></tr>{reasons}</table>"
    policy = f"<p class='muted'>{escape(rows['duplicate_policy'])}</p>"
    return f"<h2>Row accounting</h2><table>{table}</table>{policy}{extra}"


def _confusion(quality: dict[str, Any] | None) -> str:
    if not quality or not quality.get("confusion_matrix"):
        return ""
    labels = quality["confusion_matrix"]["labels"]
    matrix = quality["confusion_matrix"]["matrix"]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in labels)
    body = []
    for label, row in zip(labels, matrix, strict=True):
        total = sum(row) or 1
        cells = "".join(
            f"<td style='background:rgba(59,111,216,{count / total:.2f})'>{count}</td>" for count in row
        )
        body.append(f"<tr><th>{escape(str(label))}</th>{cells}</tr>")
    return (
        "<h2>Confusion matrix</h2><p class='muted'>rows: true class, columns: predicted class; "
        f"shading: share of the row</p><table><tr><th></th>{head}</tr>{''.join(body)}</table>"
    )


def _bar(value: float | None) -> str:
    if value is None:
        return "<td class='l muted'>undefined</td>"
    bar = f"<div class='barbox'><div class='bar' style='width:{value * 100:.1f}%'></div></div>"
    return f"<td class='l'>{bar}{value:.3f}</td>"


def _per_class(quality: dict[str, Any] | None) -> str:
    if not quality or not quality.get("per_class"):
        return ""
    rows = "".join(
        f"<tr><th>{escape(str(c['class']))}</th><td>{c['support']}</td><td>{c['predicted']}</td>"
        f"{_bar(c.get('precision'))}{_bar(c.get('recall'))}{_bar(c.get('f1'))}</tr>"
        for c in quality["per_class"]
    )
    return (
        "<h2>Per class</h2><table><tr><th>class</th><th>support</th><th>predicted</th>"
        f"<th class='l'>precision</th><th class='l'>recall</th><th class='l'>F1</th></tr>{rows}</table>"
    )


def _drift(drift: dict[str, Any] | None) -> str:
    if not drift:
        return ""
    notes = "".join(f"<p class='warn'>{escape(n)}</p>" for n in drift.get("notes", []))
    features = drift.get("feature_psi", [])
    top = max((f["psi"] for f in features), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td class='l'>{escape(f['feature'])}</td><td>{f['psi']:.4f}</td>"
        f"<td class='l'><div class='barbox'><div class='bar' style='width:{f['psi'] / top * 100:.1f}%'></div>"
        "</div></td></tr>"
        for f in features
    )
    table = f"<table><tr><th class='l'>feature</th><th>PSI</th><th></th></tr>{rows}</table>" if rows else ""
    return (
        f"<h2>Drift against the training baseline</h2><p>Rows with captured inputs: {drift['feature_rows']}. "
        f"Prediction PSI: {_number(drift.get('prediction_psi'))}. Smoothing: {escape(drift['smoothing'])}. "
        "PSI below 0.1 is usually read as stable, above 0.25 as a significant shift.</p>"
        f"{notes}{table}"
    )


def _hours(hours: list[dict[str, Any]], publication: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class='l'>{escape(h['hour'])}</td><td>{h['rows']}</td>"
        f"<td>{_number(h['metrics'].get('accuracy_score'))}</td><td>{_number(h['metrics'].get('f1_macro_score'))}</td>"
        f"<td class='l'>{'yes' if h['published'] else escape(h.get('not_published_reason', 'no'))}</td></tr>"
        for h in hours
    )
    return (
        "<h2>By prediction hour</h2><p class='muted'>CloudWatch values are timestamped at the hour the "
        f"predictions were made. Data points sent: {publication.get('data_points', 0)}.</p>"
        "<table><tr><th class='l'>hour (UTC)</th><th>rows</th><th>accuracy</th><th>macro F1</th>"
        f"<th class='l'>published</th></tr>{rows}</table>"
    )


def _omitted(quality: dict[str, Any] | None) -> str:
    if not quality or not quality.get("omitted"):
        return ""
    rows = "".join(
        f"<tr><td class='l'>{escape(name)}</td><td class='l'>{escape(reason)}</td></tr>"
        for name, reason in quality["omitted"].items()
    )
    return f"<table><tr><th class='l'>omitted metric</th><th class='l'>reason</th></tr>{rows}</table>"
