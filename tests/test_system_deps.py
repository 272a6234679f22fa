"""tools/system-deps, which `make test` runs first: it names what is missing in one line when it cannot install
it (not root), and lets everything through when nothing is missing."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import REPO

SCRIPT = REPO / "tools" / "system-deps"


def run(path_dir, uid: int, **env) -> subprocess.CompletedProcess:
    (path_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")  # who the script thinks it runs as
    (path_dir / "id").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CHROMIUM", "FEWSHOT_SKIP_SYSTEM_DEPS")}
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)], env={**base, "PATH": str(path_dir), **env}, capture_output=True, text=True, timeout=60
    )


def test_not_root_and_both_missing_names_them_in_one_line(tmp_path):
    done = run(tmp_path, 1000)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "system-deps: the tests need redis-server chromium: install them "
        "(Debian/Ubuntu: sudo apt-get install -y redis-server chromium) and run again"
    ]


def test_nothing_missing_passes_silently(tmp_path):
    for tool in ("redis-server", "chromium"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    done = run(tmp_path, 1000)
    assert done.returncode == 0 and done.stderr == ""


def test_a_chromium_that_is_not_there_is_named(tmp_path):
    (tmp_path / "redis-server").write_text("#!/bin/sh\n")
    (tmp_path / "redis-server").chmod(0o755)
    done = run(tmp_path, 0, CHROMIUM=str(tmp_path / "no-chromium"))
    assert done.returncode == 2 and f"CHROMIUM={tmp_path / 'no-chromium'} is not an executable file" in done.stderr


def test_the_skip_variable_skips(tmp_path):
    done = run(tmp_path, 1000, FEWSHOT_SKIP_SYSTEM_DEPS="1")
    assert done.returncode == 0 and done.stderr == ""


def test_make_test_runs_it_before_anything_else():
    # As a user types it: not as a sub-make of the `make test` that may be running this test (no "Entering
    # directory" lines, no inherited flags).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    dry = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "-n", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert dry.stdout.splitlines()[0] == "tools/system-deps"
