"""Audit every pinned requirement set with pip-audit, and say plainly what could not be audited.

``make audit`` runs ``python -m infra.audit --pip-audit .venv-audit/bin/pip-audit``. Each set is
audited as written (``--no-deps --disable-pip``: the files are fully pinned, so nothing is
resolved or installed). pip-audit needs a vulnerability service on the internet (PyPI's JSON API
by default, or OSV); it has no offline database. Without the service it either fails to connect
or, behind a mirror that answers 404, reports every package as "not found on PyPI" and still
prints "No known vulnerabilities found". This runner reads pip-audit's JSON instead of its exit
status, so such a run is reported as NOT AUDITED, never as clean.

Exit status: 1 when a vulnerability is found that ``requirements/audit-triage.txt`` does not
list; with ``--strict`` also 1 when a package could not be audited (for a CI job that has the
network); 0 otherwise. A run never waits longer than ``--timeout`` per set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETS = (
    "requirements/dev.txt",
    "requirements/tools.txt",
    "requirements/tools-checkov.txt",
    "requirements/tools-audit.txt",
    "requirements/bench.txt",
    "functions/inference/requirements.txt",
    "functions/inference/requirements-tensorflow.txt",
    "functions/metrics/requirements.txt",
    "functions/alarm/requirements.txt",
)
TRIAGE = "requirements/audit-triage.txt"


@dataclass
class SetResult:
    """What pip-audit said about one requirements file."""

    path: str
    audited: int = 0
    not_audited: list[str] = field(default_factory=list)
    findings: list[dict[str, str]] = field(default_factory=list)
    error: str = ""


def read_triage(path: Path) -> dict[str, str]:
    """Triaged vulnerability ids with their reasons: ``<id> <reason>`` per line, ``#`` comments."""
    triaged: dict[str, str] = {}
    if not path.exists():
        return triaged
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            vuln_id, _, reason = text.partition(" ")
            triaged[vuln_id] = reason.strip()
    return triaged


def parse_report(path: str, report: Mapping[str, Any]) -> SetResult:
    """Count audited and skipped packages and collect the vulnerabilities of pip-audit's JSON report."""
    result = SetResult(path)
    dependencies = report.get("dependencies", [])
    assert isinstance(dependencies, list)
    for dependency in dependencies:
        name = f"{dependency.get('name')}=={dependency.get('version', '?')}"
        if "skip_reason" in dependency:
            result.not_audited.append(name)
            continue
        result.audited += 1
        for vuln in dependency.get("vulns", []):
            result.findings.append(
                {
                    "package": name,
                    "id": str(vuln.get("id")),
                    "aliases": ", ".join(vuln.get("aliases", [])),
                    "fix_versions": ", ".join(vuln.get("fix_versions", [])),
                }
            )
    return result


def audit_set(pip_audit: str, path: str, service: str, timeout_s: float) -> SetResult:
    """Run pip-audit on one file; a failure to run or to reach the service becomes ``error``."""
    command = [
        pip_audit,
        "--requirement",
        str(ROOT / path),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--vulnerability-service",
        service,
        "--timeout",
        "10",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        return SetResult(path, error=f"pip-audit did not finish within {timeout_s:g} s")
    except OSError as exc:
        return SetResult(path, error=f"pip-audit cannot run: {exc}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return SetResult(path, error=f"pip-audit exit {done.returncode}: {last[:300]}")
    return parse_report(path, report)


def summarise(results: Sequence[SetResult], triaged: dict[str, str], strict: bool) -> tuple[list[str], int]:
    """The lines to print and the exit status."""
    lines = [f"{'requirements set':<50} {'audited':>8} {'not audited':>12} {'findings':>9}"]
    untriaged: list[dict[str, str]] = []
    skipped = 0
    for result in results:
        missing = len(result.not_audited) if not result.error else "all"
        lines.append(f"{result.path:<50} {result.audited:>8} {missing!s:>12} {len(result.findings):>9}")
        if result.error:
            lines.append(f"    NOT AUDITED: {result.error}")
        skipped += len(result.not_audited) + (1 if result.error else 0)
        for finding in result.findings:
            known = triaged.get(finding["id"])
            status = f"triaged: {known}" if known is not None else "NOT TRIAGED"
            lines.append(
                f"    {finding['package']} {finding['id']} ({finding['aliases']}) "
                f"fixed in {finding['fix_versions'] or 'no release'}: {status}"
            )
            if known is None:
                untriaged.append(finding)

    audited = sum(r.audited for r in results)
    if audited == 0:
        lines.append(
            "NOT AUDITED: no package could be checked; the vulnerability service is unreachable "
            "(no network, or a mirror without PyPI's JSON API). Run `make audit` where it is reachable."
        )
    elif skipped:
        lines.append(f"PARTLY AUDITED: {skipped} packages or sets could not be checked (see above).")
    if untriaged:
        lines.append(f"{len(untriaged)} vulnerabilities are not triaged in {TRIAGE}.")
        return lines, 1
    if strict and skipped:
        return lines, 1
    return lines, 0


def main(argv: Sequence[str] | None = None) -> int:
    """Audit the pinned sets; print one table and the verdict."""
    parser = argparse.ArgumentParser(prog="python -m infra.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"], help="vulnerability service")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per requirements set")
    parser.add_argument("--strict", action="store_true", help="fail when a package could not be audited")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("sets", nargs="*", default=list(SETS), help="requirements files (default: every set)")
    args = parser.parse_args(argv)

    results = [audit_set(args.pip_audit, path, args.service, args.timeout) for path in args.sets]
    lines, status = summarise(results, read_triage(ROOT / TRIAGE), args.strict)
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json is not None:
        payload = [vars(r) for r in results]
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
