"""Versions side by side: when one label file joins predictions of two or more model versions.

A canary sends part of the traffic to a new version while the old one serves the rest, so one label
file can hold rows of both. The **window** of the comparison is that label file: every version with
matched rows in it is compared, over those rows only. The prediction times of each version are
listed, and the comparison says when they do not overlap (the versions then answered different
hours of traffic, and a difference may come from the traffic rather than the model).

Versions are put in order by the ``created`` time of their model cards; when two cards share a time
or one cannot be read, by the time of each version's first prediction in the file instead. Each
version is compared with the one before it: the **difference is newer minus older**.

A difference is within the bootstrap noise when it is at most two standard deviations of the
difference, ``2 * sqrt(std_older**2 + std_newer**2)``: the versions' rows are disjoint, so their
bootstrap deviations add in quadrature. Below :data:`truthwatch.quality.BOOTSTRAP_MIN_ROWS` rows a
version has no bootstrap, and the comparison says the noise cannot be judged.

Examples
--------
>>> older = VersionQuality("m", "aaaaaaaaaaaa", "2024-06-01T00:00:00Z", 0, 0, 400, 0.90, 0.89, 0.015, 0.016)
>>> newer = VersionQuality("m", "bbbbbbbbbbbb", "2024-06-02T00:00:00Z", 0, 0, 400, 0.91, 0.90, 0.014, 0.015)
>>> compare_versions([newer, older])["differences"][0]["accuracy_score"]["within_noise"]
True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from truthwatch.quality import BOOTSTRAP_MIN_ROWS

NOISE_DEVIATIONS = 2.0
"""A difference up to this many standard deviations of the difference is read as noise (about 95%)."""

COMPARED = (("accuracy_score", "accuracy"), ("f1_macro_score", "macro F1"))

WINDOW = (
    "the rows of this label file: every version with matched rows in it, over those rows only; "
    "each version's prediction times are listed"
)


@dataclass(frozen=True)
class VersionQuality:
    """What the comparison needs of one version's matched rows.

    ``first_prediction`` and ``last_prediction`` are epoch seconds; the ``*_std`` values are the
    bootstrap standard deviations, None below the bootstrap's minimum rows. A metric that is
    undefined for the rows (no rows) is None.
    """

    model_name: str
    model_version: str
    created: str
    first_prediction: float
    last_prediction: float
    rows: int
    accuracy_score: float | None
    f1_macro_score: float | None
    accuracy_score_std: float | None = None
    f1_macro_score_std: float | None = None

    def entry(self) -> dict[str, Any]:
        """The version's line of the report's comparison section."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created": self.created,
            "first_prediction": _iso(self.first_prediction),
            "last_prediction": _iso(self.last_prediction),
            "rows": self.rows,
            "accuracy_score": self.accuracy_score,
            "f1_macro_score": self.f1_macro_score,
            "accuracy_score_std": self.accuracy_score_std,
            "f1_macro_score_std": self.f1_macro_score_std,
        }


def compare_versions(versions: list[VersionQuality]) -> dict[str, Any] | None:
    """The comparison section of the report, or None with fewer than two versions.

    Returns
    -------
    dict
        ``window`` (what the rows are), ``ordered_by`` (``created`` or ``first prediction``),
        ``versions`` oldest first, ``differences`` (one per consecutive pair, newer minus older,
        with a plain ``statement`` per metric) and ``notes``.
    """
    if len(versions) < 2:
        return None
    created = {v.model_version: _parse_time(v.created) for v in versions}
    times = [t for t in created.values() if t is not None]
    by_card = len(times) == len(versions) and len(set(times)) == len(times)
    if by_card:
        ordered = sorted(versions, key=lambda v: created[v.model_version] or datetime.min.replace(tzinfo=UTC))
    else:
        ordered = sorted(versions, key=lambda v: (v.first_prediction, v.model_version))

    notes = []
    for older, newer in itertools.pairwise(ordered):
        if newer.first_prediction > older.last_prediction or older.first_prediction > newer.last_prediction:
            notes.append(
                f"the predictions of {older.model_version} and {newer.model_version} do not overlap in "
                "time: the versions answered different traffic"
            )
    return {
        "window": WINDOW,
        "ordered_by": "created" if by_card else "first prediction",
        "versions": [v.entry() for v in ordered],
        "differences": [_difference(older, newer) for older, newer in itertools.pairwise(ordered)],
        "noise_rule": (
            f"within noise when |difference| <= {NOISE_DEVIATIONS:g} x sqrt(std_older^2 + std_newer^2), "
            f"the bootstrap standard deviations of each version's rows ({BOOTSTRAP_MIN_ROWS} rows or more)"
        ),
        "notes": notes,
    }


def _difference(older: VersionQuality, newer: VersionQuality) -> dict[str, Any]:
    result: dict[str, Any] = {"older": older.model_version, "newer": newer.model_version}
    for metric, label in COMPARED:
        result[metric] = _metric_difference(older, newer, metric, label)
    return result


def _metric_difference(
    older: VersionQuality, newer: VersionQuality, metric: str, label: str
) -> dict[str, Any]:
    old_value, new_value = getattr(older, metric), getattr(newer, metric)
    if old_value is None or new_value is None:
        return {"difference": None, "statement": f"{label} is undefined for one of the versions"}
    difference = new_value - old_value
    old_std, new_std = getattr(older, f"{metric}_std"), getattr(newer, f"{metric}_std")
    entry: dict[str, Any] = {"difference": difference}
    change = f"{label} {difference:+.4f} ({newer.model_version} minus {older.model_version})"
    if old_std is None or new_std is None:
        entry["within_noise"] = None
        entry["statement"] = (
            f"{change}; fewer than {BOOTSTRAP_MIN_ROWS} rows for one version, so the noise cannot be judged"
        )
        return entry
    noise = math.sqrt(old_std**2 + new_std**2)
    entry["noise_std"] = noise
    entry["within_noise"] = abs(difference) <= NOISE_DEVIATIONS * noise
    if entry["within_noise"]:
        entry["statement"] = (
            f"{change} is within the bootstrap noise (+/- {NOISE_DEVIATIONS * noise:.4f}): these rows do not "
            "show the versions differ"
        )
    else:
        direction = "better" if difference > 0 else "worse"
        entry["statement"] = (
            f"{change} is beyond the bootstrap noise (+/- {NOISE_DEVIATIONS * noise:.4f}): the newer version "
            f"does {direction} on these rows"
        )
    return entry


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
