"""Version comparison: order by card time, newer minus older, and the bootstrap-noise statement."""

from __future__ import annotations

import pytest

from truthwatch.comparison import VersionQuality, compare_versions

HOUR = 3600.0


def _version(
    version: str, created: str, accuracy: float, std: float | None = 0.01, first: float = 0.0, rows: int = 500
) -> VersionQuality:
    return VersionQuality(
        model_name="digits",
        model_version=version,
        created=created,
        first_prediction=first,
        last_prediction=first + HOUR,
        rows=rows,
        accuracy_score=accuracy,
        f1_macro_score=accuracy - 0.01,
        accuracy_score_std=std,
        f1_macro_score_std=std,
    )


def test_comparison_needs_two_versions() -> None:
    assert compare_versions([_version("aaaaaaaaaaaa", "2024-06-01T00:00:00Z", 0.9)]) is None


def test_comparison_is_newer_minus_older_by_card_time() -> None:
    old = _version("bbbbbbbbbbbb", "2024-06-01T00:00:00Z", 0.95)
    new = _version("aaaaaaaaaaaa", "2024-06-02T00:00:00Z", 0.90)

    comparison = compare_versions([old, new])

    assert comparison is not None
    assert comparison["ordered_by"] == "created"
    assert [v["model_version"] for v in comparison["versions"]] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]
    [difference] = comparison["differences"]
    assert (difference["older"], difference["newer"]) == ("bbbbbbbbbbbb", "aaaaaaaaaaaa")
    assert difference["accuracy_score"]["difference"] == pytest.approx(-0.05)
    # 0.05 against 2 x sqrt(2) x 0.01 = 0.028: beyond the noise
    assert difference["accuracy_score"]["noise_std"] == pytest.approx(0.01 * 2**0.5)
    assert difference["accuracy_score"]["within_noise"] is False
    assert "does worse" in difference["accuracy_score"]["statement"]


def test_comparison_says_when_the_difference_is_within_the_noise() -> None:
    old = _version("bbbbbbbbbbbb", "2024-06-01T00:00:00Z", 0.90, std=0.02)
    new = _version("aaaaaaaaaaaa", "2024-06-02T00:00:00Z", 0.92, std=0.02)

    [difference] = compare_versions([new, old])["differences"]  # type: ignore[index]

    assert difference["accuracy_score"]["within_noise"] is True
    assert "within the bootstrap noise" in difference["accuracy_score"]["statement"]
    assert "+0.0200" in difference["accuracy_score"]["statement"]


def test_comparison_falls_back_to_first_prediction_when_cards_share_a_time() -> None:
    same = "2024-06-01T00:00:00Z"
    early = _version("cccccccccccc", same, 0.9, first=10 * HOUR)
    late = _version("dddddddddddd", same, 0.8, first=10.5 * HOUR)

    comparison = compare_versions([late, early])

    assert comparison is not None
    assert comparison["ordered_by"] == "first prediction"
    assert comparison["differences"][0]["newer"] == "dddddddddddd"
    assert comparison["notes"] == []  # the two hours overlap


def test_comparison_cannot_judge_noise_below_the_bootstrap_minimum_and_notes_disjoint_times() -> None:
    old = _version("bbbbbbbbbbbb", "2024-06-01T00:00:00Z", 0.90, first=0.0)
    small = _version("aaaaaaaaaaaa", "not a time", 0.70, std=None, first=5 * HOUR, rows=50)

    comparison = compare_versions([old, small])

    assert comparison is not None
    assert comparison["ordered_by"] == "first prediction"
    accuracy = comparison["differences"][0]["accuracy_score"]
    assert accuracy["within_noise"] is None and "cannot be judged" in accuracy["statement"]
    assert "do not overlap" in comparison["notes"][0]
