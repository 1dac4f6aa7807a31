"""assess_join: per-hour values at their hours, the rest once per version at the median hour."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np

from tests.unit.test_join import T0, make_record, small_card
from truthwatch.join import InMemoryPredictionStore, join_labels, read_labels
from truthwatch.label_job import assess_join
from truthwatch.notifications import LabelObject
from truthwatch.quality import assess_quality


def test_label_job_publishes_hourly_values_per_hour_and_the_full_set_once_at_the_median_hour() -> None:
    card = small_card()
    hours = [0, 0, 0, 1, 1, 3]  # the median prediction falls in hour 0 + 1
    records = {
        f"p{i}": make_record(card, f"p{i}", i % 3, T0 + timedelta(hours=h, minutes=i))
        for i, h in enumerate(hours)
    }
    text = "id,label\n" + "".join(f"p{i},{(i + (i == 4)) % 3}\n" for i in range(len(hours)))
    result = join_labels(
        read_labels(io.BytesIO(text.encode())), InMemoryPredictionStore(records), lambda n, v: card
    )
    now = T0 + timedelta(days=1)

    [report], points, _ = assess_join(LabelObject(bucket="b", key="labels/x.csv"), result, now)

    by_metric: dict[str, list[tuple[datetime, float]]] = {}
    for point in points:
        by_metric.setdefault(point.name, []).append((point.timestamp, point.value))
    start = T0.replace(minute=0)
    assert [t for t, _ in by_metric["accuracy_score"]] == [
        start,
        start + timedelta(hours=1),
        start + timedelta(hours=3),
    ]
    assert [v for _, v in by_metric["labels_matched"]] == [3, 2, 1]
    assert [v for _, v in by_metric["accuracy_score"]] == [1.0, 0.5, 1.0]  # row 4 is labelled wrong
    matched = result.versions[(card.name, card.version)]
    full = assess_quality(matched.y_true, matched.y_pred, matched.probabilities, card.class_names)
    assert by_metric["log_loss"] == [(start + timedelta(hours=1), full.values["log_loss"])]
    assert "balanced_accuracy_score" in by_metric and "roc_auc_ovr_score" not in report["hours"][0]["metrics"]
    assert [h["rows"] for h in report["hours"]] == [3, 2, 1]
    assert report["comparison"] is None
    assert report["attributions"] == {"available": False, "note": "the model card has no attributions"}
    assert np.isfinite([p.value for p in points]).all()
    assert all(p.timestamp.tzinfo is UTC for p in points)
