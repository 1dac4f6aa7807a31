"""The audit runner reads pip-audit's JSON: skipped packages are never reported as clean."""

from __future__ import annotations

from infra.audit import parse_report, summarise

VULNERABLE = {
    "dependencies": [
        {
            "name": "jinja2",
            "version": "3.1.2",
            "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}],
        },
        {"name": "numpy", "version": "2.4.6", "vulns": []},
    ]
}
OFFLINE = {
    "dependencies": [
        {
            "name": "numpy",
            "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.4.6)",
        },
    ]
}


def test_an_untriaged_finding_fails_and_names_the_package() -> None:
    result = parse_report("functions/x/requirements.txt", VULNERABLE)

    lines, status = summarise([result], {}, strict=False)

    assert (result.audited, result.not_audited) == (2, [])
    assert status == 1
    assert any("jinja2==3.1.2 GHSA-h5c8-rqwp-cp95" in line and "NOT TRIAGED" in line for line in lines)


def test_a_triaged_finding_passes_with_its_reason() -> None:
    result = parse_report("r.txt", VULNERABLE)

    lines, status = summarise([result], {"GHSA-h5c8-rqwp-cp95": "templates are ours only"}, strict=False)

    assert status == 0
    assert any("triaged: templates are ours only" in line for line in lines)


def test_a_run_without_the_service_says_not_audited_and_fails_only_when_strict() -> None:
    result = parse_report("r.txt", OFFLINE)

    lines, status = summarise([result], {}, strict=False)
    _, strict_status = summarise([result], {}, strict=True)

    assert result.audited == 0 and result.not_audited == ["numpy==?"]
    assert lines[-1].startswith("NOT AUDITED")
    assert (status, strict_status) == (0, 1)
