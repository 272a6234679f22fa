"""Start and stop local processes (redis-server, rq workers, the gunicorn backend) by PID, for run, demo and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.lifetime import child_preexec


class ProcessError(RuntimeError):
    """A process did not start or did not become ready; the message holds its log's tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    """A started process and its log; stop() signals its own process group, never anything by name."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    info: dict = field(default_factory=dict)
    temp_dirs: list[Path] = field(default_factory=list)  # removed once the process has stopped

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to this process alone (tests use SIGKILL to play a crash)."""
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        try:
            if self.alive():
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            if not self.alive():
                for path in self.temp_dirs:
                    shutil.rmtree(path, ignore_errors=True)


def spawn(name: str, command: list[str], log_dir: Path, env: dict | None = None, cwd: Path | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    handle = open(log_path, "ab")
    # Own group: stop() reaches its children too. child_preexec: it gets SIGTERM if this process dies unannounced.
    popen = subprocess.Popen(
        command,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=child_preexec,
    )
    handle.close()
    return Proc(name, popen, log_path)


def wait_until(check, proc: Proc, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise ProcessError(f"{proc.name} exited ({proc.popen.returncode}) before {what}:\n{proc.tail()}")
        if check():
            return
        time.sleep(0.1)
    raise ProcessError(f"{proc.name} not {what} after {timeout:.0f} s:\n{proc.tail()}")


def start_redis(log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    """A private redis-server on loopback without persistence (nothing depends on state left behind)."""
    binary = shutil.which("redis-server")
    if not binary:
        raise ProcessError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = port or free_port()
    data = Path(tempfile.mkdtemp(prefix="fsp-redis-"))  # its working dir, empty (no persistence); removed on stop
    try:
        proc = spawn(
            f"redis-{port}",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            log_dir,
        )
    except OSError:
        shutil.rmtree(data, ignore_errors=True)
        raise
    proc.info["port"] = port
    proc.temp_dirs.append(data)
    try:
        wait_until(lambda: _tcp_open(port), proc, 15, "accepting connections")
    except ProcessError:
        proc.stop()
        raise
    return proc, f"redis://127.0.0.1:{port}/0"


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def backend_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def start_workers(count: int, log_dir: Path, env: dict, prefix: str = "worker") -> list[Proc]:
    procs = []
    for index in range(count):
        procs.append(spawn(f"{prefix}-{index}", [sys.executable, "-m", "backend.commands.cli", "worker"], log_dir, env))
    return procs


def start_backend(
    log_dir: Path, env: dict, port: int | None = None, workers: int = 2, timeout: float = 60
) -> tuple[Proc, str]:
    port = port or free_port()
    env = {**env, "BACKEND_PORT": str(port), "WEB_WORKERS": str(workers)}
    proc = spawn(f"backend-{port}", [sys.executable, "-m", "backend.commands.cli", "serve"], log_dir, env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(url + "/health", env), proc, timeout, "answering /health")
    proc.info["port"] = port
    return proc, url


def _http_ok(url: str, env: dict) -> bool:
    auth = (env["BASIC_AUTH_USER"], env.get("BASIC_AUTH_PASS", "")) if env.get("BASIC_AUTH_USER") else None
    try:
        return httpx.get(url, timeout=1, auth=auth).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        proc.stop()
