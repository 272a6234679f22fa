"""Install, start and drive a real local Label Studio 1.23.2 for end-to-end tests and demos."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from backend.lifetime import child_preexec
from backend.processes import free_port
from backend.studio.client import StudioAdmin, StudioError

LABEL_STUDIO_VERSION = "1.23.2"
# Fixed credentials: the user and its legacy token are created together with the
# organisation, i.e. when the template database is built, so every server started
# from that template knows exactly these. docker-compose.yml's demo Label Studio has the same defaults: one
# demo login everywhere.
USERNAME = "admin@example.com"
PASSWORD = "fewshot-admin-pass"
TOKEN = "fewshot-e2e-token-0123456789"

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS_FILE = REPO_ROOT / "tools" / "label-studio-constraints.txt"
_INSTALL_MARKER = ".fewshot-install-complete"
_TEMPLATE_MARKER = ".fewshot-template-complete"
_DB_NAME = "label_studio.sqlite3"


def _log(message: str) -> None:
    print(f"[local_studio] {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """FEWSHOT_CACHE_DIR, else ~/.cache/fewshot-prelabel."""
    configured = os.environ.get("FEWSHOT_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "fewshot-prelabel"


def _home(cache_dir: Path | None) -> Path:
    home = (cache_dir or default_cache_dir()) / f"label-studio-{LABEL_STUDIO_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # An flock is released by the kernel if the holder dies, so a crashed
    # install never leaves a stale lock behind.
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
    """Run cmd; on failure raise with the tail of its output."""
    with open(log or os.devnull, "ab") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = _tail(log) if log else ""
        raise StudioError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _venv_ready(venv: Path) -> bool:
    return (venv / "bin" / "label-studio").exists() and (venv / _INSTALL_MARKER).exists()


def installed_venv(cache_dir: Path | None = None) -> Path | None:
    """The Label Studio venv if it is installed (nothing is installed here), else None."""
    venv = _home(cache_dir) / "venv"
    return venv if _venv_ready(venv) else None


def ensure_installed(cache_dir: Path | None = None) -> Path:
    """Return the Label Studio venv, installing it once (about 80 s) if needed."""
    home = _home(cache_dir)
    venv = home / "venv"
    if _venv_ready(venv):
        return venv
    with _locked(home / "install.lock"):
        if _venv_ready(venv):  # another process finished while we waited
            return venv
        _install_venv(home, venv)
    return venv


def _install_venv(home: Path, venv: Path) -> None:
    if not CONSTRAINTS_FILE.exists():
        raise StudioError(f"constraints file missing: {CONSTRAINTS_FILE}")
    _remove_leftovers(home)
    # A venv cannot be moved (its scripts' shebangs hold the absolute path), so
    # it is built in a uniquely named directory that never moves, and the
    # stable name `venv` becomes a symlink to it in one atomic rename. An
    # interrupted build is thus never visible under `venv`.
    build = Path(tempfile.mkdtemp(prefix="venv-", dir=home))
    log = home / "install.log"
    log.write_text("")
    started = time.monotonic()
    try:
        _build_venv(build, log)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    _publish(build, venv)
    _log(f"Label Studio {LABEL_STUDIO_VERSION} installed in {time.monotonic() - started:.0f} s: {venv}")


def _remove_leftovers(home: Path) -> None:
    """Drop builds an interrupted install left behind (we hold the lock)."""
    current = (home / "venv").resolve() if (home / "venv").is_symlink() else None
    for path in home.glob("venv-*"):
        if path.is_dir() and path.resolve() != current:
            shutil.rmtree(path, ignore_errors=True)


def _build_venv(build: Path, log: Path) -> None:
    _log(f"creating a venv for Label Studio {LABEL_STUDIO_VERSION} in {build} (log: {log})")
    # sys.executable, not whatever `python3` is on PATH: the constraints were
    # resolved for this interpreter's version.
    _run([sys.executable, "-m", "venv", "--clear", str(build)], log=log)
    _log(f"pip install label-studio=={LABEL_STUDIO_VERSION} (about 80 s, 1 GB)...")
    pip = [str(build / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _run(pip + ["-q", f"label-studio=={LABEL_STUDIO_VERSION}", "-c", str(CONSTRAINTS_FILE)], log=log)
    (build / _INSTALL_MARKER).write_text(f"label-studio=={LABEL_STUDIO_VERSION}\n")


def _publish(build: Path, venv: Path) -> None:
    link = venv.with_name(f".venv-link-{os.getpid()}")
    link.unlink(missing_ok=True)
    link.symlink_to(build.name)
    if venv.exists() and not venv.is_symlink():
        shutil.rmtree(venv)  # a real directory from some older layout
    os.replace(link, venv)


def ensure_migrated_db(venv: Path, cache_dir: Path | None = None) -> Path:
    """Return a migrated template database holding USERNAME with TOKEN, building it once."""
    home = _home(cache_dir)
    template = home / "template"
    if _template_ready(template):
        return template / _DB_NAME
    with _locked(home / "template.lock"):
        if not _template_ready(template):
            _build_template(Path(venv), home, template)
    return template / _DB_NAME


def _template_stamp() -> str:
    # Changing the fixed credentials must invalidate an existing template.
    return f"{LABEL_STUDIO_VERSION}\n{USERNAME}\n{TOKEN}\n"


def _template_ready(template: Path) -> bool:
    marker = template / _TEMPLATE_MARKER
    return (template / _DB_NAME).exists() and marker.exists() and marker.read_text() == _template_stamp()


def _build_template(venv: Path, home: Path, template: Path) -> None:
    build = Path(tempfile.mkdtemp(prefix="template-", dir=home))
    log = home / "template-init.log"
    log.write_text("")
    _log(f"migrating a template Label Studio database (20-60 s, log: {log})")
    started = time.monotonic()
    # Flags go after the subcommand: argparse subparsers re-apply their own
    # defaults and would silently drop flags given before `init`. The legacy
    # token only takes effect here, when the organisation is first created.
    cmd = [str(venv / "bin" / "label-studio"), "init", "-q", *_credential_args(build)]
    try:
        _run(cmd, env=studio_env(build), log=log)
        if not (build / _DB_NAME).exists():
            raise StudioError(f"`label-studio init` made no {_DB_NAME} in {build}\n{_tail(log)}")
        (build / _TEMPLATE_MARKER).write_text(_template_stamp())
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    shutil.rmtree(template, ignore_errors=True)
    os.rename(build, template)  # a data dir, unlike a venv, may move
    _log(f"template database ready in {time.monotonic() - started:.0f} s: {template / _DB_NAME}")


def _credential_args(data_dir: Path) -> list[str]:
    return [
        "--data-dir", str(data_dir),
        "--username", USERNAME,
        "--password", PASSWORD,
        "--user-token", TOKEN,
        "--enable-legacy-api-token",
    ]  # fmt: skip


# Label Studio's get_env(NAME) reads LABEL_STUDIO_NAME, HEARTEX_NAME, then bare
# NAME, so a shell's USERNAME or PORT would leak into the server. PYTHON* and
# VIRTUAL_ENV are dropped so the caller's venv cannot shadow Label Studio's.
_DROPPED_ENV = {
    "USERNAME", "PASSWORD", "PORT", "HOST", "USER_TOKEN", "BASE_DATA_DIR", "DATABASE_NAME",
    "DJANGO_DB", "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
}  # fmt: skip
_DROPPED_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_")


def studio_env(data_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a Label Studio process that keeps everything in data_dir."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV and not k.startswith(_DROPPED_PREFIXES)}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        # Its analytics user id goes to ~/.config/label-studio otherwise (and stays there).
        XDG_CONFIG_HOME=str(data_dir / "config"),
        # Without these two, a backend or webhook on 127.0.0.1 gets 403.
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    env.update(extra_env or {})
    return env


class LocalStudio:
    """A Label Studio server on 127.0.0.1, started from the template database."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        venv: Path | None = None,
        extra_env: dict[str, str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.port = port
        self.venv = Path(venv) if venv else None
        self.extra_env = dict(extra_env or {})
        self.cache_dir = cache_dir
        self._owns_data_dir = data_dir is None
        # Absolute, because the server runs with the data dir as its cwd.
        self.data_dir = Path(data_dir).resolve() if data_dir else Path(tempfile.mkdtemp(prefix="fewshot-studio-"))
        self.log_path = self.data_dir / "label-studio.log"
        self.username, self.password, self.token = USERNAME, PASSWORD, TOKEN
        self._proc: subprocess.Popen[bytes] | None = None
        self._api: StudioAdmin | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def api(self) -> StudioAdmin:
        if self._api is None:
            self._api = StudioAdmin(self.url, self.token, timeout=120)
        return self._api

    def __enter__(self) -> LocalStudio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> LocalStudio:
        """Start the server and wait until /health answers and the token works."""
        if self.running:
            return self
        venv = self.venv = self.venv or ensure_installed(self.cache_dir)
        self._seed_database(venv)
        self.port = self.port or free_port()
        cmd = [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1"]
        cmd += ["--port", str(self.port), *_credential_args(self.data_dir)]
        with open(self.log_path, "ab") as log:
            # Own session = own process group, so stop() can signal everything
            # the server spawned without touching anything else.
            proc = self._proc = subprocess.Popen(
                cmd, env=studio_env(self.data_dir, self.extra_env), cwd=self.data_dir,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=child_preexec,  # SIGTERM if the starting process dies without stopping it
            )  # fmt: skip
        try:
            self._wait_ready(proc, timeout)
        except BaseException:
            self.stop(remove_data=False)
            raise
        return self

    def _seed_database(self, venv: Path) -> None:
        # An existing database is kept, so a demo's data dir survives restarts.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        target = self.data_dir / _DB_NAME
        if not target.exists():
            shutil.copyfile(ensure_migrated_db(venv, self.cache_dir), target)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._failure(f"exited with {proc.returncode}")
            # Label Studio silently moves to the next port when its port is
            # taken; then /health here would never answer, or some other server would.
            if "is in use" in self.log_path.read_text(errors="replace"):
                raise self._failure(f"found port {self.port} taken and moved to another one")
            if self._healthy():
                self._check_token()
                return
            time.sleep(0.5)
        raise self._failure(f"not healthy at {self.url} after {timeout:.0f} s")

    def _failure(self, what: str) -> StudioError:
        return StudioError(f"Label Studio {what} (log: {self.log_path}):\n{_tail(self.log_path)}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _check_token(self) -> None:
        try:
            self.api.whoami()
        except StudioError as exc:
            hint = "the database in the data dir was not built from this module's template"
            raise StudioError(f"Label Studio rejects token {self.token!r} ({hint}): {exc}") from exc

    def stop(self, remove_data: bool = True) -> None:
        """SIGTERM the server's process group, SIGKILL it after 15 s; drop a temp data dir."""
        if self._api is not None:
            self._api.close()
            self._api = None
        if self._proc is not None:
            _terminate_group(self._proc)
            self._proc = None
        if remove_data and self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _terminate_group(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    # With start_new_session=True the group id is the child's own pid. Once the
    # child has exited and been reaped, that id may belong to someone else:
    # then nothing is signalled.
    if proc.poll() is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)  # the unreaped leader still holds the id
        proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """`python -m backend.devtools.local_studio install|init|start`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m backend.devtools.local_studio", description=__doc__)
    parser.add_argument("command", choices=["install", "init", "start"])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, help="kept across runs (default: a temp dir, removed on exit)")
    args = parser.parse_args(argv)
    venv = ensure_installed()
    if args.command == "install":
        print(venv)
    elif args.command == "init":
        print(ensure_migrated_db(venv))
    else:
        _serve(LocalStudio(port=args.port, data_dir=args.data_dir, venv=venv))
    return 0


def _serve(studio: LocalStudio) -> None:
    # SIGTERM (docker stop, kill) stops the server as cleanly as Ctrl-C does;
    # SIGINT is set too because a shell's `cmd &` starts us with it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    with studio:
        print(f"Label Studio {LABEL_STUDIO_VERSION} at {studio.url} (pid {studio.pid}, log {studio.log_path})")
        print(f"login {studio.username} / {studio.password}; API: Authorization: Token {studio.token}")
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while studio.running:
                time.sleep(1)
        if not studio.running:
            print(f"Label Studio stopped; last log lines:\n{_tail(studio.log_path)}")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
