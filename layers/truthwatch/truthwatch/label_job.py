"""Process one label object end to end: stream, parse, join, assess, report, publish.

This is the one call the metrics handler makes per object. AWS clients come in through
:class:`Services`, so tests hand in moto-backed ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from pydantic import ValidationError

from truthwatch import telemetry
from truthwatch.card import CARD_FILE, ModelCard
from truthwatch.comparison import VersionQuality, compare_versions
from truthwatch.drift import assess_drift, bin_count_grid, feature_bins
from truthwatch.join import (
    DynamoDBPredictionStore,
    JoinResult,
    MatchedRows,
    PredictionStore,
    join_labels,
    read_labels,
)
from truthwatch.notifications import LabelObject
from truthwatch.publish import MetricPoint, hour_start, metric_data, put_metric_data, split_by_age
from truthwatch.quality import HOURLY_METRICS, Quality, assess_quality, confusion_counts, label_scores
from truthwatch.records import format_time
from truthwatch.report import (
    attribution_summary,
    build_report,
    rejected_key,
    report_key,
    text_utf8,
    to_html,
    to_json,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

REJECTED_UPLOAD = TransferConfig(max_concurrency=2)
"""``rejected/`` goes up in parts of 8 MB, two at a time: at most a few parts are held in memory."""

_FILE_COUNTS = ("labels_read", "labels_unknown", "labels_rejected", "labels_duplicate")
_VERSION_METRICS = tuple(
    m.name for m in telemetry.ALL_METRICS if m.publisher == "metrics" and m.name not in _FILE_COUNTS
)
"""What a version's points may carry: the per-hour values and the full set of the version."""


@dataclass(frozen=True)
class Services:
    """The clients and resource names one run needs."""

    s3: S3Client
    dynamodb: DynamoDBClient
    cloudwatch: CloudWatchClient
    predictions_table: str
    data_bucket: str
    namespace: str = telemetry.NAMESPACE


@dataclass
class CardCache:
    """Model cards read from ``models/<name>/<version>/model.json`` in the data bucket, once each."""

    s3: S3Client
    bucket: str
    cards: dict[tuple[str, str], ModelCard | None] = field(default_factory=dict)

    def __call__(self, name: str, version: str) -> ModelCard | None:
        """The card of ``name``/``version``, or None (logged) when it is missing or invalid."""
        if (name, version) not in self.cards:
            self.cards[(name, version)] = self._read(name, version)
        return self.cards[(name, version)]

    def _read(self, name: str, version: str) -> ModelCard | None:
        key = f"models/{name}/{version}/{CARD_FILE}"
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return ModelCard.model_validate_json(body)
        except ClientError as exc:
            logger.warning(
                "model card unavailable", extra={"key": key, "error": exc.response["Error"]["Code"]}
            )
        except ValidationError as exc:
            logger.warning("model card invalid", extra={"key": key, "error": str(exc.errors()[:1])})
        return None


def process_label_object(
    obj: LabelObject,
    services: Services,
    *,
    store: PredictionStore | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Assess one label object; return a summary (status, row counts, reports written, data points).

    ``status`` is ``processed``, or ``gone`` when the object was deleted or replaced since the
    notification (the replacement has its own notification).
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    body = _open(obj, services.s3)
    if body is None:
        return {"status": "gone", "key": obj.key}

    labels = read_labels(body)
    with labels.rejected:  # the rejected rows wait in a temporary file until written
        store = store or DynamoDBPredictionStore(services.dynamodb, services.predictions_table)
        result = join_labels(labels, store, CardCache(services.s3, services.data_bucket))

        model_names = _model_names(result, services)
        reports, points, stale = assess_join(obj, result, now)
        points.extend(_count_points(result, model_names, now))
        fresh, too_old = split_by_age(points, now)
        stale.extend(too_old)

        data = metric_data(fresh)
        written = _write(obj, result, reports, stale, len(data), services, now)
    calls = put_metric_data(services.cloudwatch, data, services.namespace)

    summary = {
        "status": "processed",
        "key": obj.key,
        **{k: v for k, v in result.accounting().items() if isinstance(v, int)},
        "versions": [v for _, v in result.versions],
        "reports": written,
        "data_points": len(data),
        "put_metric_data_calls": calls,
        "not_published": len(stale),
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    logger.info("label object processed", extra=summary)
    return summary


def _open(obj: LabelObject, s3: S3Client) -> Any:
    args: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        args["VersionId"] = obj.version_id
    elif obj.etag:
        # The object named by the notification, not a newer one written under the same key since.
        args["IfMatch"] = obj.etag if obj.etag.startswith('"') else f'"{obj.etag}"'
    try:
        return s3.get_object(**args)["Body"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in {"NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412", "404"}:
            logger.warning("label object gone", extra={"bucket": obj.bucket, "key": obj.key, "error": code})
            return None
        raise


def _model_names(result: JoinResult, services: Services) -> list[str]:
    names = sorted({name for name, _ in result.versions})
    if names:
        return names
    # Nothing matched, so no record names the model; the cards the inference function uploaded do.
    listing = services.s3.list_objects_v2(Bucket=services.data_bucket, Prefix="models/", Delimiter="/")
    return [p["Prefix"].split("/")[1] for p in listing.get("CommonPrefixes", [])]


def assess_join(
    obj: LabelObject, result: JoinResult, now: datetime
) -> tuple[list[dict[str, Any]], list[MetricPoint], list[MetricPoint]]:
    """Quality, drift and hourly values of every matched version: the reports and the metric points.

    A file without a matched row still gets one report (version ``none``) for its row accounting.
    The third list is empty here; points too old for CloudWatch are sorted out by the caller.
    """
    reports: list[dict[str, Any]] = []
    points: list[MetricPoint] = []
    stale: list[MetricPoint] = []
    source = {"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id, "etag": obj.etag}
    accounting = result.accounting()
    compared: list[VersionQuality] = []

    for (name, version), matched in sorted(result.versions.items()):
        hourly = hourly_counts(matched)
        quality = assess_quality(
            matched.y_true, matched.y_pred, matched.probabilities, matched.card.class_names
        )
        drift = assess_drift(
            matched.card,
            matched.y_pred,
            matched.confidence,
            matched.bins,
            matched.rows_without_inputs,
            feature_counts=hourly.feature_counts.sum(axis=0) if len(matched.bins) else None,
        )
        hours = hourly.values()
        points.extend(_hour_points(name, version, hours))
        points.extend(_version_points(name, version, matched, {**quality.values, **drift.published()}))
        compared.append(_version_quality(name, version, matched, quality))
        reports.append(
            build_report(
                source=source,
                processed_at=now,
                model={"name": name, "version": version},
                rows={**accounting, "matched_this_version": matched.rows},
                quality={
                    "rows": quality.rows,
                    "classes_present": quality.classes_present,
                    "metrics": quality.values,
                    "omitted": quality.omitted,
                    "per_class": quality.per_class,
                    "confusion_matrix": {
                        "labels": list(matched.card.class_names),
                        "matrix": quality.confusion,
                    },
                    "bootstrap": quality.bootstrap,
                },
                drift=drift.summary(),
                hours=[_hour_entry(hour, now) for hour in hours],
                publication={},
                attributions=attribution_summary(matched.card, quality.per_class),
            )
        )

    comparison = compare_versions(compared)
    for report in reports:
        report["comparison"] = comparison

    if not reports:
        reports.append(
            build_report(
                source=source,
                processed_at=now,
                model=None,
                rows={**accounting, "matched_this_version": 0},
                quality=None,
                drift=None,
                hours=[],
                publication={},
            )
        )
    return reports, points, stale


@dataclass(frozen=True)
class HourlyCounts:
    """Counts per prediction hour of one version, from one pass over its rows.

    Attributes
    ----------
    hours
        The epoch hours with rows, oldest first, shape ``(h,)``.
    confusion
        Confusion matrix per hour, shape ``(h, n_classes, n_classes)``.
    feature_counts
        Rows per baseline bin of every feature, per hour, shape ``(h, n_features, max bins)``.
    feature_rows
        Rows with captured inputs per hour, shape ``(h,)``.
    """

    card: ModelCard
    hours: npt.NDArray[np.int64]
    confusion: npt.NDArray[np.int64]
    feature_counts: npt.NDArray[np.int64]
    feature_rows: npt.NDArray[np.intp]

    def values(self) -> list[tuple[int, int, dict[str, float]]]:
        """``(epoch hour, rows, values)`` per hour: accuracy, macro F1 and matched rows.

        PSI is not among them: it is measured over the version's rows of the whole file (see
        :func:`truthwatch.drift.assess_drift`), since the rows of one hour are often too few.
        """
        out = []
        for i, hour in enumerate(self.hours.tolist()):
            matrix = self.confusion[i]
            values: dict[str, float] = dict(label_scores(matrix, HOURLY_METRICS).values)
            values["labels_matched"] = float(matrix.sum())
            out.append((hour, int(matrix.sum()), values))
        return out


def hourly_counts(matched: MatchedRows) -> HourlyCounts:
    """Count the rows of ``matched`` per prediction hour: confusion matrices and feature bins."""
    hours, group = np.unique(matched.hours, return_inverse=True)
    n_classes = len(matched.card.class_names)
    confusion = confusion_counts(matched.y_true, matched.y_pred, n_classes, group, len(hours))
    n_bins = feature_bins(matched.card)
    feature_group = np.searchsorted(hours, matched.bins_hour)
    counts = bin_count_grid(matched.bins, n_bins, feature_group, len(hours))
    return HourlyCounts(
        card=matched.card,
        hours=hours,
        confusion=confusion,
        feature_counts=counts,
        feature_rows=np.bincount(feature_group, minlength=len(hours)),
    )


def _hour_points(
    name: str, version: str, hours: list[tuple[int, int, dict[str, float]]]
) -> list[MetricPoint]:
    # The hour's scores are weighed by its rows, so an hour's average over files and versions is
    # the score of all its rows rather than of each file alike; the row count itself is a plain sum.
    return [
        MetricPoint(
            metric, value, hour_start(hour), name, version, rows if metric in HOURLY_METRICS else None
        )
        for hour, rows, values in hours
        for metric, value in values.items()
    ]


def _version_points(
    name: str, version: str, matched: MatchedRows, values: dict[str, float]
) -> list[MetricPoint]:
    """The metrics computed only over the whole version, at the hour of its median prediction time."""
    moment = hour_start(int(np.median(matched.predicted_at) // 3600))
    return [
        MetricPoint(metric, value, moment, name, version)
        for metric, value in values.items()
        if metric in _VERSION_METRICS and metric not in HOURLY_METRICS
    ]


def _version_quality(name: str, version: str, matched: MatchedRows, quality: Quality) -> VersionQuality:
    bootstrap = quality.bootstrap or {}
    return VersionQuality(
        model_name=name,
        model_version=version,
        created=matched.card.created,
        first_prediction=float(matched.predicted_at.min()),
        last_prediction=float(matched.predicted_at.max()),
        rows=matched.rows,
        accuracy_score=quality.values.get("accuracy_score"),
        f1_macro_score=quality.values.get("f1_macro_score"),
        accuracy_score_std=bootstrap.get("accuracy_score_std"),
        f1_macro_score_std=bootstrap.get("f1_macro_score_std"),
    )


def _hour_entry(hour: tuple[int, int, dict[str, float]], now: datetime) -> dict[str, Any]:
    epoch_hour, rows, values = hour
    moment = hour_start(epoch_hour)
    entry: dict[str, Any] = {
        "hour": format_time(moment),
        "rows": rows,
        "metrics": {k: v for k, v in values.items() if k != "labels_matched"},
    }
    fresh, _ = split_by_age([MetricPoint("labels_matched", float(rows), moment, "m")], now)
    entry["published"] = bool(fresh)
    if not fresh:
        entry["not_published_reason"] = "older than CloudWatch's two weeks; in this report only"
    return entry


def _count_points(result: JoinResult, model_names: Iterable[str], now: datetime) -> list[MetricPoint]:
    # These describe the file, not a prediction hour, so they are stamped with the processing time.
    # The version dimension is set only when every matched row belongs to one version.
    versions = {v for _, v in result.versions}
    version = next(iter(versions)) if len(versions) == 1 else None
    counts = dict(
        zip(_FILE_COUNTS, (result.read, result.unknown, len(result.rejected), result.duplicate), strict=True)
    )
    return [
        MetricPoint(metric, float(value), now, model_name, version)
        for model_name in model_names
        for metric, value in counts.items()
    ]


def _write(
    obj: LabelObject,
    result: JoinResult,
    reports: list[dict[str, Any]],
    stale: list[MetricPoint],
    data_points: int,
    services: Services,
    now: datetime,
) -> list[str]:
    """Write ``rejected/`` first, then the reports; return the keys written.

    The order keeps the bucket consistent whatever step fails: every report is rendered before
    anything is written (strict JSON refuses NaN), and a report is written only once the rejected
    rows it counts are in place. A failure fails the invocation before the metrics are published;
    the retry writes the same keys again, over whatever was written the first time.
    """
    not_published = sorted({format_time(p.timestamp) for p in stale})
    bodies: list[tuple[str, bytes, str]] = []
    for report in reports:
        report["publication"] = {
            "namespace": services.namespace,
            "data_points": data_points,
            "not_published_hours": not_published,
            "note": "values older than two weeks cannot be sent to CloudWatch and are in this report only"
            if not_published
            else "",
        }
        version = report["model"]["version"] if report["model"] else None
        bodies.append((report_key(version, now, obj.key, ".json"), to_json(report), "application/json"))
        html = text_utf8(to_html(report))
        bodies.append((report_key(version, now, obj.key, ".html"), html, "text/html; charset=utf-8"))

    # Written for every processed object, empty when nothing was rejected: a corrected file uploaded
    # under the same key must not leave the earlier file's rejected rows standing (the versioned
    # bucket keeps them as an earlier version). Streamed from the temporary file, a part at a time
    # above the multipart threshold (8 MB), so a million rejected rows never sit in memory whole.
    key = rejected_key(obj.key)
    services.s3.upload_fileobj(
        result.rejected.jsonl(),
        services.data_bucket,
        key,
        ExtraArgs={"ContentType": "application/x-ndjson"},
        Config=REJECTED_UPLOAD,
    )
    written = [key]

    for report_at, body, content_type in bodies:
        services.s3.put_object(
            Bucket=services.data_bucket, Key=report_at, Body=body, ContentType=content_type
        )
        written.append(report_at)
    return written
