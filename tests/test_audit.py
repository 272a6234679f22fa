"""The dependency audit (tools/audit.py, `make audit`): an offline OSV snapshot is matched against the installed
packages, recorded advisories never fail, new ones do, and no reachable advisory data is said plainly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata

from hypothesis import assume, given
from hypothesis import strategies as st
from packaging.version import Version

from tests.conftest import REPO

AUDIT = REPO / "tools" / "audit.py"
SNAPSHOT = REPO / "tests" / "data" / "osv-snapshot.json"


def load_audit():
    spec = importlib.util.spec_from_file_location("fsp_audit", AUDIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_audit(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("FEWSHOT_ADVISORY_DB", "FEWSHOT_AUDIT_REQUIRED")}
    return subprocess.run(
        [sys.executable, str(AUDIT)], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def test_the_snapshot_reports_recorded_advisories_and_passes():
    result = run_audit(FEWSHOT_ADVISORY_DB=str(SNAPSHOT))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    flask, jinja = metadata.version("flask"), metadata.version("jinja2")
    assert (
        f"pip-audit: recorded (label-studio-ml 1.0.9 pin, SECURITY.md): flask {flask}: PYSEC-2023-62 "
        "(fixed in 2.2.5)" in lines
    )
    assert any(
        line.startswith(
            f"pip-audit: recorded (label-studio-ml 1.0.9 pin, SECURITY.md): jinja2 {jinja}: GHSA-cpwx-vrp4-4pq7"
        )
        for line in lines
    )
    assert "PYSEC-2014-14" not in result.stdout  # requests is past that fix
    installed = len(load_audit().installed())
    assert lines[-1].startswith(f"pip-audit: {installed} dependencies checked against the OSV snapshot")
    assert lines[-1].endswith("2 recorded advisories, 0 new")


def test_a_new_advisory_in_a_snapshot_directory_fails_the_audit(tmp_path):
    (tmp_path / "recorded.json").write_text(SNAPSHOT.read_text())
    pyyaml = metadata.version("pyyaml")
    (tmp_path / "PYSEC-TEST-1.json").write_text(
        json.dumps(
            {  # one advisory per file, as OSV's all.zip holds them
                "id": "PYSEC-TEST-1",
                "aliases": [],
                "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"}, "versions": [pyyaml]}],
            }
        )
    )
    result = run_audit(FEWSHOT_ADVISORY_DB=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"pip-audit: NEW FINDING: pyyaml {pyyaml}: PYSEC-TEST-1 (fixed in -)" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1].endswith("2 recorded advisories, 1 new")


def test_an_unreadable_snapshot_is_one_clean_line(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    result = run_audit(FEWSHOT_ADVISORY_DB=str(tmp_path / "broken.json"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read the advisory snapshot FEWSHOT_ADVISORY_DB=")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_no_reachable_advisory_data_says_skipped():
    # Every request of pip-audit goes to a proxy that refuses connections: nothing can be checked.
    dead = "http://127.0.0.1:9"
    env = {
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        "https_proxy": dead,
        "http_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    result = run_audit(**env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("pip-audit: skipped: no advisory data reachable")
    assert "checked against" not in result.stdout and "0 new" not in result.stdout
    required = run_audit(FEWSHOT_AUDIT_REQUIRED="1", **env)
    assert required.returncode == 1 and required.stdout.startswith("pip-audit: skipped: no advisory data reachable")


def test_verdict_with_every_package_skipped_is_skipped():
    lines, code = load_audit().verdict([{"name": "x", "version": "1", "vulns": [], "skip_reason": "no data"}], "s")
    assert code == 0 and lines[0].startswith("pip-audit: skipped: no advisory data reachable (s: all 1")


versions = st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)).map(
    lambda t: Version(".".join(map(str, t)))
)


@given(versions, versions, versions)
def test_ecosystem_ranges_hold_exactly_the_versions_from_introduced_up_to_fixed(version, introduced, fixed):
    assume(introduced < fixed)  # OSV ranges are ordered
    audit = load_audit()
    span = [{"type": "ECOSYSTEM", "events": [{"introduced": str(introduced)}, {"fixed": str(fixed)}]}]
    assert audit._in_ranges(version, span) == (introduced <= version < fixed)
    last = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": str(fixed)}]}]
    assert audit._in_ranges(version, last) == (version <= fixed)
