"""The local stack copies each report below ``<state_dir>/reports/``, never outside it, and says so."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from infra.local.stack import Console, LocalStack, StackConfig, WrittenReport, local_report_path, printable


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


class _S3:
    """Answers get_object with ``body``, or fails as S3 does when ``body`` is None."""

    def __init__(self, body: bytes | None) -> None:
        self.body = body

    def get_object(self, Bucket: str, Key: str) -> dict[str, object]:  # noqa: N803 - boto3's names
        if self.body is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return {"Body": io.BytesIO(self.body)}


def _stack(tmp_path: Path, s3: _S3) -> LocalStack:
    stack = LocalStack(StackConfig(state_dir=tmp_path), Console(stream=io.StringIO()))
    stack.name_of = lambda logical_id: "data-bucket"  # type: ignore[method-assign]
    stack.client = lambda service: s3  # type: ignore[method-assign]
    return stack


SUMMARY = {
    "processed": [
        {
            "key": "labels/day one.csv",
            "reports": [
                "rejected/labels/day one.csv.jsonl",
                "reports/v1/2026-12-04/day one.csv.json",
                "reports/v1/2026-12-04/day one.csv.html",
            ],
        }
    ],
    "skipped": [],
}


def test_each_report_of_an_invocation_is_copied_and_announced(tmp_path: Path) -> None:
    stack = _stack(tmp_path, _S3(b'{"rows": {}}'))

    stack._collect_reports(SUMMARY)

    folder = tmp_path / "reports" / "v1" / "2026-12-04"
    label, prefix = "labels/day one.csv", "reports/v1/2026-12-04/"
    assert stack.reports == [
        WrittenReport(label, prefix + "day one.csv.json", folder / "day one.csv.json"),
        WrittenReport(label, prefix + "day one.csv.html", folder / "day one.csv.html"),
    ]
    assert (folder / "day one.csv.json").read_bytes() == b'{"rows": {}}'
    assert not (tmp_path / "reports" / "labels").exists()  # rejected/ is not a report
    console = stack.console.stream.getvalue()  # type: ignore[attr-defined]
    assert console.count("report on labels/day one.csv: s3://data-bucket/reports/v1/") == 1


def test_a_report_that_cannot_be_read_is_announced_and_the_poller_goes_on(tmp_path: Path) -> None:
    stack = _stack(tmp_path, _S3(None))

    stack._collect_reports(SUMMARY)  # raises nothing: the poller thread that called it survives

    assert [r.path for r in stack.reports] == [None, None]
    assert "not copied: An error occurred (NoSuchKey)" in stack.console.stream.getvalue()  # type: ignore[attr-defined]


def test_a_key_cannot_clear_or_rewrite_the_console() -> None:
    key = "labels/esc\x1b[2J\x1b[31mFAKE\rreport \u00e9\u2028.csv"

    shown = printable(f"report on {key}")

    assert shown == "report on labels/esc\\x1b[2J\\x1b[31mFAKE\\rreport \u00e9\\u2028.csv"
    assert shown.isprintable()
