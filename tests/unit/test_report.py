"""Report keys, strict JSON and the self-contained HTML page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from tests.unit.test_join import small_card
from truthwatch.card import Attributions, ModelCard
from truthwatch.report import (
    attribution_summary,
    build_report,
    json_utf8,
    rejected_key,
    report_key,
    text_utf8,
    to_html,
    to_json,
)

WHEN = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)


def _report(**overrides: object) -> dict[str, object]:
    rows = {
        "read": 4,
        "matched": 2,
        "unknown": 1,
        "rejected": 1,
        "duplicate": 0,
        "balanced": True,
        "rejected_reasons": {"unknown label": 1},
        "unknown_examples": ["x"],
        "duplicate_rows_overridden": [],
        "duplicate_policy": "the last row wins",
        "file_error": None,
        "matched_this_version": 2,
    }
    report = build_report(
        source={"bucket": "b", "key": "labels/<script>.csv", "version_id": None, "etag": "e"},
        processed_at=WHEN,
        model={"name": "digits", "version": "0123456789ab"},
        rows=rows,
        quality={
            "rows": 2,
            "classes_present": 2,
            "metrics": {"accuracy_score": 0.5},
            "omitted": {"roc_auc_ovr_score": "only one class"},
            "per_class": [
                {"class": "0", "support": 1, "predicted": 2, "precision": 0.5, "recall": 1.0, "f1": 0.667},
                {
                    "class": "1",
                    "support": 1,
                    "predicted": 0,
                    "recall": 0.0,
                    "f1": 0.0,
                    "omitted": {"precision": "never predicted"},
                },
            ],
            "confusion_matrix": {"labels": ["0", "1"], "matrix": [[1, 0], [1, 0]]},
            "bootstrap": None,
        },
        drift={
            "feature_psi_max": 0.3,
            "feature_rows": 2,
            "prediction_psi": 0.1,
            "mean_confidence": 0.8,
            "feature_psi": [{"feature": "pixel_0_0", "psi": 0.3}],
            "smoothing": "additive",
            "notes": [],
        },
        hours=[
            {
                "hour": "2024-06-03T09:00:00.000Z",
                "rows": 2,
                "metrics": {"accuracy_score": 0.5},
                "published": True,
            }
        ],
        publication={"data_points": 10},
    )
    report.update(overrides)
    return report


def test_report_keys_follow_the_bucket_layout() -> None:
    assert (
        report_key("0123456789ab", WHEN, "labels/2024/a b.csv.gz", ".json")
        == "reports/0123456789ab/2024-06-03/2024/a b.csv.gz.json"
    )
    assert report_key(None, WHEN, "labels/a.csv", ".html") == "reports/none/2024-06-03/a.csv.html"
    assert rejected_key("labels/a.csv") == "rejected/labels/a.csv.jsonl"


def test_report_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        to_json(_report(extra=float("nan")))


def test_report_html_is_self_contained_and_escapes_text() -> None:
    html = to_html(_report())

    assert "<script>" not in html and "&lt;script&gt;.csv" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    for section in (
        "Summary",
        "Row accounting",
        "Confusion matrix",
        "Per class",
        "Drift",
        "By prediction hour",
    ):
        assert section in html
    assert "undefined" in html  # class 1's precision


def test_report_html_marks_the_drift_tiles_computed_from_too_few_rows() -> None:
    mark = "too few rows; not published"
    published = to_html(_report())
    drift = dict(
        _report()["drift"], omitted={"feature_psi_max": "fewer than 200 rows with captured inputs (2)"}
    )
    few = to_html(_report(drift=drift))

    assert mark not in published
    assert few.count(mark) == 1
    tile = few[few.index("max feature PSI") :]
    assert tile.index(mark) < tile.index("</div>")  # inside the max feature PSI tile, not the next


def test_report_html_renders_a_report_without_matches() -> None:
    html = to_html(_report(model=None, quality=None, drift=None, hours=[]))

    assert "no model" in html and "Confusion matrix" not in html


def _card_with_attributions() -> ModelCard:
    card = small_card(n_features=64, n_classes=3)
    by_class = {
        name: tuple(round((i - 20) * 0.001 * (c + 1), 6) for i in range(64)) for c, name in enumerate("012")
    }
    attributions = Attributions(
        method="integrated gradients",
        baseline="all-zero input",
        by_class=by_class,
        rows_by_class={"0": 5, "1": 6, "2": 7},
    )
    return card.model_copy(update={"attributions": attributions})


PER_CLASS = [
    {"class": "0", "support": 5, "predicted": 5, "recall": 0.9},
    {"class": "1", "support": 6, "predicted": 4, "recall": 0.5},
    {"class": "2", "support": 7, "predicted": 9, "recall": 0.7},
]


def _grid_titles(html: str, class_name: str) -> list[str]:
    start = html.index(f"<table class='heat' data-class='{class_name}'>")
    table = html[start : html.index("</table>", start)]
    return re.findall(r"title='([^']*)'", table)


def test_report_html_draws_the_attributions_of_the_lowest_recall_class_from_the_card() -> None:
    card = _card_with_attributions()
    section = attribution_summary(card, PER_CLASS)

    html = to_html(_report(attributions=section))

    assert section["focus_class"] == "1"
    focus = html[html.index("<div class='grids focus'>") :]
    titles = _grid_titles(focus, "1")
    assert len(titles) == 64
    expected = card.attributions.by_class["1"]  # type: ignore[union-attr]
    assert titles[0] == f"f0: {expected[0]:.6g}"
    assert titles[63] == f"f63: {expected[63]:.6g}"
    assert [float(t.split(": ")[1]) for t in titles] == pytest.approx(list(expected), rel=1e-5)
    assert "lowest recall in this report" in html and "(0.500)" in html
    assert html.count("<table class='heat'") == 4  # the focus class, then every class small


def test_report_attribution_section_says_why_nothing_is_drawn() -> None:
    no_map = attribution_summary(small_card(n_features=64), PER_CLASS)
    not_a_grid = attribution_summary(
        _card_with_attributions().model_copy(update={"input": small_card(n_features=4).input}, deep=True),
        PER_CLASS,
    )

    assert no_map == {"available": False, "note": "the model card has no attributions"}
    assert "not an 8x8 grid" in not_a_grid["note"]
    html = to_html(_report(attributions=no_map))
    assert "No attribution map: the model card has no attributions" in html
    assert "<table class='heat'" not in html


def test_report_html_shows_the_version_comparison() -> None:
    from truthwatch.comparison import VersionQuality, compare_versions

    versions = [
        VersionQuality("digits", v, created, 0.0, 3600.0, 400, acc, acc, 0.01, 0.01)
        for v, created, acc in (
            ("0123456789ab", "2024-06-02T00:00:00Z", 0.93),
            ("ba9876543210", "2024-06-01T00:00:00Z", 0.90),
        )
    ]

    html = to_html(_report(comparison=compare_versions(versions)))

    assert "Version comparison" in html
    assert "0123456789ab (this report)" in html
    assert "accuracy +0.0300 (0123456789ab minus ba9876543210) is beyond the bootstrap noise" in html


# Lone surrogates, from a JSON escape or from bytes decoded with surrogateescape, have no UTF-8
# encoding; the writers must not fail on them, wherever in the report they are.
ODD_TEXTS = ["zz\udc00", "\ud800", "a\udfffb\ud83d", "\U0001f600 \ufffd é", "\x00\x1b"]


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_report_writers_write_any_text(text: str) -> None:
    rows = {**_report()["rows"], "unknown_examples": [text], "rejected_reasons": {text: 1}}  # type: ignore[dict-item]
    source = {"bucket": "b", "key": f"labels/{text}.csv", "version_id": None, "etag": "e"}
    report = _report(rows=rows, source=source, model={"name": text, "version": text})

    written = to_json(report)
    page = text_utf8(to_html(report))

    assert json.loads(written.decode("utf-8")) == json.loads(json.dumps(report))  # the same strings back
    assert page.decode("utf-8").count("\ufffd") >= sum(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert json.loads(json_utf8(json.dumps({text: [text]}, ensure_ascii=False))) == {text: [text]}


@pytest.mark.parametrize("character", ["K", "é", "☃", "\U0001f600"])
def test_report_keys_of_a_1024_byte_label_key_fit_s3s_limit(character: str) -> None:
    body = character * ((1024 - len("labels/.csv")) // len(character.encode()))
    label_key = f"labels/{body}" + "x" * (1024 - len(f"labels/{body}.csv".encode())) + ".csv"
    other = label_key[:-5] + "y.csv"  # the same beginning, another file
    assert len(label_key.encode()) == 1024

    keys = [
        report_key("0123456789ab", WHEN, label_key, ".json"),
        report_key(None, WHEN, label_key, ".html"),
        rejected_key(label_key),
    ]

    assert all(len(k.encode()) <= 1024 for k in keys)
    assert [k.rsplit(".", 1)[-1] for k in keys] == ["json", "html", "jsonl"]
    assert keys[0].startswith(f"reports/0123456789ab/2024-06-03/{character * 100}")
    assert len({k.rsplit("~", 1)[-1].split(".")[0] for k in keys}) == 1  # one hash of the label key
    assert rejected_key(other) != keys[2] and report_key(None, WHEN, other, ".html") != keys[1]
