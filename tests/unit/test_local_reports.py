"""Where the local stack copies a report: below ``<state_dir>/reports/``, never outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.stack import local_report_path


def test_a_report_keeps_its_path_below_reports(tmp_path: Path) -> None:
    key = "reports/89943394247f/2026-12-04/e2e/first.json"
    assert local_report_path(tmp_path, key) == tmp_path / "89943394247f" / "2026-12-04" / "e2e" / "first.json"


@pytest.mark.parametrize(
    "key",
    [
        "reports/v/2026-12-04/../../../../etc/passwd.json",  # a label key with .. parts
        "reports/v/2026-12-04/./a.json",
        "reports/v/2026-12-04//a.json",
        "reports/v/2026-12-04/" + "é" * 128 + ".json",  # 261 bytes: over a file name's 255
        "reports/v/2026-12-04/a\0b.json",
        "reports",
    ],
)
def test_a_key_that_cannot_be_a_local_path_is_not_copied(tmp_path: Path, key: str) -> None:
    assert local_report_path(tmp_path, key) is None
