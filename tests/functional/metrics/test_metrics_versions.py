"""A label file with rows of two real model versions (a canary): comparison and attribution map."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from sklearn.metrics import accuracy_score, f1_score

from functions.metrics import app
from tests.events import load_event
from tests.functional.metrics.conftest import BUCKET, Stack, record_predictions, upload_card
from truthwatch.training import ExportResult

KEY = "labels/2024-06-03/canary.csv"
OLD_ROWS, NEW_ROWS = 300, 250

pytestmark = pytest.mark.slow


def _event(etag: str) -> dict[str, object]:
    event = load_event("s3-object-created-labels")
    event["Records"][0]["s3"]["object"]["key"] = "labels/2024-06-03/canary.csv"
    event["Records"][0]["s3"]["object"]["eTag"] = etag
    return event


def _report(stack: Stack, version: str) -> tuple[dict[str, object], str]:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"reports/{version}/{today}/2024-06-03/canary.csv"
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=f"{key}.json")["Body"].read())
    html = stack.s3.get_object(Bucket=BUCKET, Key=f"{key}.html")["Body"].read().decode()
    return report, html


def test_metrics_compares_a_canary_with_the_version_it_replaces(
    stack: Stack, second_model: ExportResult, lambda_context: LambdaContext
) -> None:
    old, new = stack.card, second_model.card
    assert old.version != new.version and new.created > old.created
    upload_card(stack, new)
    predicted_at = datetime.now(UTC) - timedelta(hours=2)
    record_predictions(stack, predicted_at, OLD_ROWS)  # one row in eight wrong
    record_predictions(stack, predicted_at, NEW_ROWS, card=new, wrong_every=4, first_id=OLD_ROWS)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))

    [summary] = app.lambda_handler(_event(stack.put_labels(KEY, body.encode())), lambda_context)["processed"]

    assert sorted(summary["versions"]) == sorted([old.version, new.version])
    y_true, y_pred = np.array(stack.y_true), np.array(stack.y_pred)
    expected = {
        version: (
            accuracy_score(y_true[part], y_pred[part]),
            f1_score(y_true[part], y_pred[part], average="macro"),
        )
        for version, part in ((old.version, slice(0, OLD_ROWS)), (new.version, slice(OLD_ROWS, None)))
    }
    report, html = _report(stack, new.version)
    comparison = report["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["ordered_by"] == "created"
    assert [(v["model_version"], v["rows"]) for v in comparison["versions"]] == [
        (old.version, OLD_ROWS),
        (new.version, NEW_ROWS),
    ]
    for entry in comparison["versions"]:
        assert entry["accuracy_score"] == pytest.approx(expected[entry["model_version"]][0])
        assert entry["f1_macro_score"] == pytest.approx(expected[entry["model_version"]][1])
    [difference] = comparison["differences"]
    assert difference["accuracy_score"]["difference"] == pytest.approx(
        expected[new.version][0] - expected[old.version][0]
    )
    assert difference["accuracy_score"]["within_noise"] is False  # 0.75 against 0.875, a few hundred rows
    assert "Version comparison" in html and f"{new.version} (this report)" in html
    assert _report(stack, old.version)[0]["comparison"] == comparison


def test_metrics_report_draws_the_attributions_of_the_lowest_recall_class(
    stack: Stack, lambda_context: LambdaContext
) -> None:
    record_predictions(stack, datetime.now(UTC) - timedelta(hours=1), 300)
    body = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(stack.ids, stack.y_true, strict=True))

    app.lambda_handler(_event(stack.put_labels(KEY, body.encode())), lambda_context)

    report, html = _report(stack, stack.card.version)
    per_class = report["quality"]["per_class"]  # type: ignore[index]
    lowest = min((c for c in per_class if "recall" in c), key=lambda c: c["recall"])["class"]
    assert report["attributions"]["focus_class"] == lowest  # type: ignore[index]
    focus = html[html.index("<div class='grids focus'>") :]
    grid = focus[focus.index(f"data-class='{lowest}'>") : focus.index("</table>")]
    values = [float(v) for v in re.findall(r"title='pixel_\d_\d: ([^']*)'", grid)]
    attributions = stack.card.attributions
    assert attributions is not None
    assert values == pytest.approx(list(attributions.by_class[lowest]), rel=1e-5, abs=1e-12)
    assert report["comparison"] is None
