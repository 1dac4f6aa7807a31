"""Report keys, strict JSON and the self-contained HTML page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from truthwatch.report import build_report, rejected_key, report_key, to_html, to_json

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


def test_report_html_renders_a_report_without_matches() -> None:
    html = to_html(_report(model=None, quality=None, drift=None, hours=[]))

    assert "no model" in html and "Confusion matrix" not in html
