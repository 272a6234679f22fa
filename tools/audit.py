"""The dependency audit (`make audit`, CI): the installed packages against known advisories, result printed.

Advisory data comes from pip-audit (PyPI's vulnerability data, online) or, when FEWSHOT_ADVISORY_DB names one,
from an offline snapshot in OSV format: a JSON file holding one advisory or a list of them, or a directory of
such files (an unpacked https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip). Advisories in
label-studio-ml 1.0.9's exact pins (Flask 1.1.2, Werkzeug 2.0.2, Jinja2 3.0.3), which cannot be upgraded and
which SECURITY.md shows out of this backend's reach, are reported as "recorded" and never fail; any other
finding does (exit 1). When no advisory data was reachable for any package the audit says
"skipped: no advisory data reachable" and exits 0, or 1 with FEWSHOT_AUDIT_REQUIRED=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

RECORDED = {  # package -> advisory ids and aliases recorded in SECURITY.md
    "flask": {
        "PYSEC-2023-62",
        "GHSA-m2qf-hxjv-5gpq",
        "CVE-2023-30861",
        "PYSEC-2026-2151",
        "GHSA-68rp-wp8r-4726",
        "CVE-2026-27205",
    },
    "werkzeug": {
        "PYSEC-2022-203",
        "CVE-2022-29361",
        "PYSEC-2023-57",
        "GHSA-px8h-6qxv-m22q",
        "CVE-2023-23934",
        "PYSEC-2023-58",
        "GHSA-xg9f-g7g7-2323",
        "CVE-2023-25577",
        "PYSEC-2023-221",
        "GHSA-hrfv-mqp8-q5rw",
        "CVE-2023-46136",
        "GHSA-2g68-c3qc-8985",
        "CVE-2024-34069",
        "GHSA-f9vj-2wh5-fj8j",
        "CVE-2024-49766",
        "GHSA-q34m-jh98-gwm2",
        "CVE-2024-49767",
        "GHSA-hgf8-39gv-g3f2",
        "CVE-2025-66221",
        "GHSA-87hc-h4r5-73f7",
        "CVE-2026-21860",
        "GHSA-29vq-49wr-vm6x",
        "CVE-2026-27199",
        "GHSA-g6x2-hccm-hh4m",
        "CVE-2026-102598",
    },
    "jinja2": {
        "GHSA-h5c8-rqwp-cp95",
        "CVE-2024-22195",
        "PYSEC-2026-1473",
        "GHSA-h75v-3vvj-5mfj",
        "CVE-2024-34064",
        "GHSA-gmj6-6f8f-6699",
        "CVE-2024-56201",
        "GHSA-q2x7-8rv6-6q7h",
        "CVE-2024-56326",
        "GHSA-cpwx-vrp4-4pq7",
        "CVE-2025-27516",
    },
}
SKIPPED = "pip-audit: skipped: no advisory data reachable"


def installed() -> dict[str, str]:
    """Every distribution of this interpreter's environment: canonical name -> version."""
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


# ---- offline: an OSV snapshot ----------------------------------------------------------------------------


def load_osv(path: Path) -> list[dict]:
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    advisories = []
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        advisories += data if isinstance(data, list) else [data]
    return advisories


def _in_ranges(version: Version, ranges: list[dict]) -> bool:
    for span in ranges:
        if span.get("type") != "ECOSYSTEM":
            continue
        affected = False
        for event in sorted(span.get("events", []), key=_event_order):
            if "introduced" in event:
                affected = event["introduced"] == "0" or version >= Version(event["introduced"])
            elif "fixed" in event and version >= Version(event["fixed"]):
                affected = False
            elif "last_affected" in event and version > Version(event["last_affected"]):
                affected = False
        if affected:
            return True
    return False


def _event_order(event: dict) -> Version:
    value = next(iter(event.values()))
    return Version("0") if value == "0" else Version(value)


def osv_findings(advisories: list[dict], packages: dict[str, str]) -> list[dict]:
    """pip-audit's JSON shape ({"name", "version", "vulns": [...]}) for the packages an advisory affects."""
    found: dict[str, list[dict]] = {}
    for advisory in advisories:
        for affected in advisory.get("affected", []):
            package = affected.get("package", {})
            name = canonicalize_name(package.get("name", ""))
            if package.get("ecosystem") != "PyPI" or name not in packages:
                continue
            try:
                version = Version(packages[name])
                hit = packages[name] in affected.get("versions", []) or _in_ranges(version, affected.get("ranges", []))
            except InvalidVersion:
                continue
            if hit:
                fixed = [e["fixed"] for r in affected.get("ranges", []) for e in r.get("events", []) if "fixed" in e]
                found.setdefault(name, []).append(
                    {"id": advisory["id"], "aliases": advisory.get("aliases", []), "fix_versions": fixed}
                )
    return [{"name": name, "version": version, "vulns": found.get(name, [])} for name, version in packages.items()]


# ---- online: pip-audit -----------------------------------------------------------------------------------


def pip_audit() -> tuple[list[dict] | None, str]:
    """pip-audit's dependency list (None when it produced no report: no service reachable, say) and, then,
    the last line it printed."""
    with tempfile.TemporaryDirectory(prefix="fsp-audit-") as tmp:
        out = Path(tmp) / "audit.json"
        said = ""
        try:
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip_audit",
                    "--local",
                    "--progress-spinner",
                    "off",
                    "--timeout",
                    "10",
                    "--format",
                    "json",
                    "--output",
                    str(out),
                ],
                timeout=300,
                check=False,
                capture_output=True,
                text=True,
            )
            said = (run.stderr.strip().splitlines() or [""])[-1][:300]
            report = json.loads(out.read_text())
        except subprocess.TimeoutExpired:
            return None, "no answer within 300 s"
        except (OSError, ValueError):
            return None, said
    return (report.get("dependencies", []) if isinstance(report, dict) else report), ""


# ---- the verdict -----------------------------------------------------------------------------------------


def verdict(deps: list[dict] | None, source: str, said: str = "") -> tuple[list[str], int]:
    """The lines to print and the exit code."""
    required = os.environ.get("FEWSHOT_AUDIT_REQUIRED") == "1"
    checked = [d for d in deps or [] if not d.get("skip_reason")]
    if not checked:
        why = (
            (f"no report: {said}" if said else "no report") if deps is None else f"all {len(deps)} dependencies skipped"
        )
        return [
            f"{SKIPPED} ({source}: {why}); nothing was checked. Set FEWSHOT_ADVISORY_DB to an OSV snapshot "
            "to audit offline."
        ], 1 if required else 0
    new, recorded = [], []
    for dep in checked:
        name = canonicalize_name(dep["name"])
        for vuln in dep.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            line = (
                f"{name} {dep.get('version')}: {vuln['id']} "
                f"(fixed in {', '.join(vuln.get('fix_versions') or []) or '-'})"
            )
            (recorded if ids & RECORDED.get(name, set()) else new).append(line)
    lines = [f"pip-audit: recorded (label-studio-ml 1.0.9 pin, SECURITY.md): {line}" for line in recorded]
    lines += [f"pip-audit: NEW FINDING: {line}" for line in new]
    skipped = len(deps) - len(checked)
    lines.append(
        f"pip-audit: {len(checked)} dependencies checked against {source}, {len(recorded)} recorded "
        f"advisories, {len(new)} new" + (f"; {skipped} not checked (no data for them)" if skipped else "")
    )
    return lines, 1 if new else 0


def main() -> int:
    snapshot = os.environ.get("FEWSHOT_ADVISORY_DB")
    if snapshot:
        path = Path(snapshot)
        try:
            advisories = load_osv(path)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read the advisory snapshot FEWSHOT_ADVISORY_DB={snapshot!r}: {exc}", file=sys.stderr)
            return 2
        deps, source = osv_findings(advisories, installed()), f"the OSV snapshot {path} ({len(advisories)} advisories)"
        said = ""
    else:
        (deps, said), source = pip_audit(), "PyPI's advisory data (pip-audit)"
    lines, code = verdict(deps, source, said)
    print("\n".join(lines), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
