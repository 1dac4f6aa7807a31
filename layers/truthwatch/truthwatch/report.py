"""The per-file, per-version report: strict JSON, and a self-contained HTML page built from it.

Both land in the data bucket at ``reports/<model version>/<YYYY-MM-DD>/<label object name>.json``
and ``.html``, where the date is the UTC day the file was processed and the name is the label key
without its ``labels/`` prefix. A file with no matched row gets one report under the version
``none``, so its row accounting is written down too. The HTML page needs no network: styles are
inline and every chart is plain HTML.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from html import escape
from typing import Any

from truthwatch.card import ModelCard
from truthwatch.records import format_time

REPORT_VERSION = 1
UNMATCHED_VERSION = "none"
LABELS_PREFIX = "labels/"

UNDEFINED_POLICY = (
    "A metric undefined for these rows (no matched rows, one class only for ROC AUC, zero division in a "
    "per-class value, fewer than 200 rows for the bootstrap deviations) is omitted with its reason; "
    "averages are taken over the classes whose value is defined. PSI from fewer than 200 rows is shown "
    "in the drift section but not published (biased upward on few rows). No value is ever NaN or "
    "infinite."
)


S3_KEY_MAX_BYTES = 1024
"""S3's limit on the UTF-8 length of a key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html)."""

KEY_HASH_CHARS = 16
"""Hex digits of the SHA-256 of the label key that stand in for the part of a long name cut off."""


def report_key(model_version: str | None, processed_at: datetime, label_key: str, suffix: str) -> str:
    """Where a report goes: ``reports/<version>/<date>/<label key without labels/><suffix>``.

    A key that would pass S3's 1,024 bytes is shortened (see :func:`fitted_key`); the report's
    ``source.key`` holds the full label key.
    """
    name = label_key[len(LABELS_PREFIX) :] if label_key.startswith(LABELS_PREFIX) else label_key
    version = model_version or UNMATCHED_VERSION
    return fitted_key(f"reports/{version}/{processed_at.strftime('%Y-%m-%d')}/", name, suffix, label_key)


def rejected_key(label_key: str) -> str:
    """Where the rejected rows of a label object go: ``rejected/<label key>.jsonl``, shortened if too long."""
    return fitted_key("rejected/", label_key, ".jsonl", label_key)


def fitted_key(prefix: str, name: str, suffix: str, label_key: str) -> str:
    """``prefix + name + suffix``, or when that passes :data:`S3_KEY_MAX_BYTES`, a key that fits.

    A label key may itself be 1,024 bytes, and the prefix and suffix added to it would make S3
    refuse every write (``KeyTooLongError``) on every retry. Then the name keeps as many of its
    first bytes as fit (whole characters), followed by ``~`` and the first
    :data:`KEY_HASH_CHARS` hex digits of the SHA-256 of the full label key, so two long label
    keys sharing a beginning still get keys of their own. Usual keys are unchanged.

    The prefix is short: a model version is a card's 12 hex digits or ``none``.
    """
    key = f"{prefix}{name}{suffix}"
    if len(key.encode("utf-8", "surrogatepass")) <= S3_KEY_MAX_BYTES:
        return key
    tag = "~" + hashlib.sha256(label_key.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_HASH_CHARS]
    room = S3_KEY_MAX_BYTES - len(f"{prefix}{tag}{suffix}".encode("utf-8", "surrogatepass"))
    kept = name.encode("utf-8", "surrogatepass")[: max(room, 0)].decode("utf-8", "ignore")
    return f"{prefix}{kept}{tag}{suffix}"


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
    comparison: dict[str, Any] | None = None,
    attributions: dict[str, Any] | None = None,
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
        "comparison": comparison,
        "attributions": attributions,
        "undefined_metric_policy": UNDEFINED_POLICY,
    }


def to_json(report: dict[str, Any]) -> bytes:
    """Strict JSON: raises ``ValueError`` rather than write NaN or infinity; any text can be written."""
    return json_utf8(json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_utf8(text: str) -> bytes:
    """JSON text, as ``json.dumps(..., ensure_ascii=False)`` writes it, encoded as UTF-8 whatever it holds.

    A lone surrogate (a JSON ``\\ud800`` escape decoded, or a byte that was not UTF-8 decoded
    with ``surrogateescape``) has no UTF-8 encoding, and ``str.encode`` would raise. In JSON it
    can only stand inside a string, so it is written back as its ``\\uXXXX`` escape, which reads
    as the same string. Text without one costs one ``encode``.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text).encode("utf-8")


def text_utf8(text: str) -> bytes:
    """Text (the HTML report) encoded as UTF-8 whatever it holds: a lone surrogate becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;
color:#1d2430;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dde6}
.muted{color:#5b6575}.tiles{display:flex;flex-wrap:wrap;gap:.75rem}
.tile{border:1px solid #d8dde6;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.tile b{display:block;font-size:1.3rem}.tile .warn{display:block;font-size:.8rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #d8dde6;padding:.25rem .5rem;text-align:right}
th{background:#f3f5f8}td.l,th.l{text-align:left}
.bar{height:.7rem;background:#3b6fd8;border-radius:2px}.barbox{width:12rem;background:#eef1f6;border-radius:2px}
.warn{color:#9a5b00}
table.heat{border-collapse:collapse;margin:.3rem 1rem .3rem 0}table.heat td{border:0;padding:0}
.grids{display:flex;flex-wrap:wrap;align-items:flex-start}.grid{margin:0 1rem .8rem 0}
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
        _comparison(report.get("comparison"), model.get("version")),
        _confusion(report.get("quality")),
        _per_class(report.get("quality")),
        _attributions(report.get("attributions")),
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
    # A drift value from too few rows is shown but not published; its tile says so where it is read.
    unpublished = drift.get("omitted", {})
    tiles = [
        ("matched rows", report["rows"].get("matched_this_version", 0), False),
        ("accuracy", metrics.get("accuracy_score"), False),
        ("constant baseline", metrics.get("constant_accuracy_score"), False),
        ("macro F1", metrics.get("f1_macro_score"), False),
        ("ROC AUC (OvR)", metrics.get("roc_auc_ovr_score"), False),
        ("log loss", metrics.get("log_loss"), False),
        ("max feature PSI", drift.get("feature_psi_max"), "feature_psi_max" in unpublished),
        ("prediction PSI", drift.get("prediction_psi"), "prediction_psi" in unpublished),
        ("mean confidence", drift.get("mean_confidence"), False),
    ]
    body = "".join(
        f"<div class='tile'><span class='muted'>{escape(n)}</span><b>{_number(v)}</b>"
        + ("<span class='warn'>too few rows; not published</span>" if too_few else "")
        + "</div>"
        for n, v, too_few in tiles
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


ATTRIBUTION_GRID_FEATURES = 64
"""Inputs drawn as an 8x8 grid when the card's input shape is flat (the digits' pixels)."""


def attribution_summary(card: ModelCard, per_class: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's attribution section: the card's mean attributions per class, and which class to show.

    ``focus_class`` is the class with the lowest recall in this report (the first on a tie), the one
    whose attributions a reader wants to see beside the confusion matrix. ``note`` says why nothing
    can be drawn: no attributions in the card, or an input that is not an image grid.
    """
    attributions = card.attributions
    if attributions is None:
        return {"available": False, "note": "the model card has no attributions"}
    grid = _grid_shape(card.input.shape)
    if grid is None:
        return {
            "available": False,
            "note": (
                f"the input has {card.n_features} features in the shape {list(card.input.shape)}, "
                "not an 8x8 grid: attributions are not drawn"
            ),
        }

    recalls = [(c["recall"], c["class"]) for c in per_class if "recall" in c]
    focus = min(recalls, key=lambda pair: pair[0]) if recalls else None
    section: dict[str, Any] = {
        "available": True,
        "method": attributions.method,
        "baseline": attributions.baseline,
        "grid": list(grid),
        "feature_names": list(card.input.feature_names),
        "by_class": {name: list(values) for name, values in attributions.by_class.items()},
        "rows_by_class": dict(attributions.rows_by_class),
        "focus_class": focus[1] if focus else None,
        "focus_recall": focus[0] if focus else None,
        "note": "",
    }
    if focus is None:
        section["note"] = "no class has a defined recall in this report"
    elif focus[1] not in attributions.by_class:
        section["note"] = f"the model card has no attributions for class {focus[1]!r}"
    return section


def _grid_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 1 and shape[0] == ATTRIBUTION_GRID_FEATURES:
        return 8, 8
    return None


def _heat_cell(value: float, scale: float, name: str, size: str) -> str:
    # Red pushes towards the class, blue away; the same scale for every class, so grids compare.
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    colour = "200,40,40" if value >= 0 else "40,90,200"
    return (
        f"<td style='width:{size};height:{size};background:rgba({colour},{strength:.2f})' "
        f"title='{escape(name)}: {value:.6g}'></td>"
    )


def _heat_grid(name: str, values: list[float], section: dict[str, Any], scale: float, size: str) -> str:
    rows, columns = section["grid"]
    names = section["feature_names"]
    body = "".join(
        "<tr>"
        + "".join(
            _heat_cell(values[r * columns + c], scale, names[r * columns + c], size) for c in range(columns)
        )
        + "</tr>"
        for r in range(rows)
    )
    rows_seen = section["rows_by_class"].get(name, 0)
    return (
        f"<div class='grid'><table class='heat' data-class='{escape(name)}'>{body}</table>"
        f"<span class='muted'>class {escape(name)} ({rows_seen} rows)</span></div>"
    )


def _attributions(section: dict[str, Any] | None) -> str:
    if section is None:
        return ""
    head = "<h2>What the model looks at</h2>"
    if not section.get("available"):
        return f"{head}<p class='muted'>No attribution map: {escape(section.get('note', ''))}.</p>"

    by_class = section["by_class"]
    scale = max((abs(v) for values in by_class.values() for v in values), default=0.0)
    explain = (
        f"<p>Mean attribution of each input to the predicted class, over the held-out rows the model "
        f"predicted as that class when it was exported ({escape(section['method'])}, baseline "
        f"{escape(section['baseline'])}). Red pushes towards the class, blue away from it; one colour "
        f"scale for every class (darkest = {scale:.4g}). Hover a cell for its value.</p>"
    )
    focus = section.get("focus_class")
    if focus is not None and focus in by_class:
        lead = (
            f"<p><b>Class {escape(focus)}</b> has the lowest recall in this report "
            f"({section['focus_recall']:.3f}): what the model looks for when it predicts it.</p>"
            f"<div class='grids focus'>{_heat_grid(focus, by_class[focus], section, scale, '1.4rem')}</div>"
        )
    else:
        lead = f"<p class='warn'>{escape(section.get('note', ''))}</p>"
    small = "".join(_heat_grid(name, values, section, scale, ".6rem") for name, values in by_class.items())
    return f"{head}{explain}{lead}<p class='muted'>Every class:</p><div class='grids'>{small}</div>"


def _comparison(comparison: dict[str, Any] | None, this_version: str | None) -> str:
    if not comparison:
        return ""
    lines = []
    for v in comparison["versions"]:
        mark = " (this report)" if v["model_version"] == this_version else ""
        lines.append(
            f"<tr><td class='l'>{escape(v['model_version'])}{mark}</td>"
            f"<td class='l'>{escape(v['created'])}</td>"
            f"<td class='l'>{escape(v['first_prediction'])} to {escape(v['last_prediction'])}</td>"
            f"<td>{v['rows']}</td><td>{_number(v['accuracy_score'])}{_plus_minus(v['accuracy_score_std'])}</td>"
            f"<td>{_number(v['f1_macro_score'])}{_plus_minus(v['f1_macro_score_std'])}</td></tr>"
        )
    statements = "".join(
        f"<li>{escape(d[metric]['statement'])}</li>"
        for d in comparison["differences"]
        for metric in ("accuracy_score", "f1_macro_score")
    )
    notes = "".join(f"<p class='warn'>{escape(n)}</p>" for n in comparison.get("notes", []))
    return (
        "<h2>Version comparison</h2>"
        f"<p class='muted'>Window: {escape(comparison['window'])}. Versions in order of "
        f"{escape(comparison['ordered_by'])} time, oldest first; differences are newer minus older.</p>"
        "<table><tr><th class='l'>version</th><th class='l'>created</th><th class='l'>predictions</th>"
        f"<th>rows</th><th>accuracy</th><th>macro F1</th></tr>{''.join(lines)}</table>"
        f"<ul>{statements}</ul>{notes}<p class='muted'>{escape(comparison['noise_rule'])}.</p>"
    )


def _plus_minus(std: float | None) -> str:
    return f" &plusmn; {std:.4f}" if std is not None else ""
