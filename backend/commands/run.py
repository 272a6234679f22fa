"""The `run` command: the whole backend on one machine (Redis if none is reachable, rq workers, gunicorn)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from backend.lifetime import die_with_parent, ignore_stop_signals, stop_signals
from backend.processes import ProcessError, backend_env, spawn, start_redis, start_workers, stop_all
from backend.settings import Settings, redacted
from backend.state import store


def run_stack(settings: Settings, workers: int, log_dir: Path | None = None) -> int:
    """Start everything, print where it is, and stop everything it started on Ctrl-C, SIGTERM, SIGHUP or when
    its parent dies (`make run` stopped with SIGTERM)."""
    redis_url = redacted(settings.redis_url)  # no password in messages
    if not store.ping(store.connect(settings.redis_url)) and not shutil.which("redis-server"):
        print(
            f"error: no Redis answers at {redis_url} (REDIS_URL) and redis-server is not installed to start one: "
            "install it (Debian: apt-get install redis-server) or set REDIS_URL to a running Redis",
            file=sys.stderr,
        )
        return 2
    stop_signals()
    die_with_parent()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="fewshot-run-"))
    started = []
    env = backend_env()
    try:
        if not store.ping(store.connect(settings.redis_url)):
            port = urlparse(settings.redis_url).port or 6379
            redis_proc, url = start_redis(log_dir, port=port)
            started.append(redis_proc)
            env["REDIS_URL"] = url
            print(f"started redis-server on {url} (no Redis was reachable at {redis_url})", flush=True)
        started += start_workers(workers, log_dir, env)
        backend = spawn("backend", [sys.executable, "-m", "backend.commands.cli", "serve"], log_dir, env)
        started.append(backend)
        print(
            f"backend on http://{settings.host}:{settings.port} with {workers} rq workers; logs in {log_dir}",
            flush=True,
        )
        if not settings.openai_base_url and not settings.openai_api_key:
            print(
                "warning: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set: every LLM call will fail",
                file=sys.stderr,
                flush=True,
            )
        _wait(started)
        return 0
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP, or the parent died
        return 0
    except ProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        ignore_stop_signals()
        stop_all(started)
        print(f"stopped everything it started; logs kept in {log_dir}", file=sys.stderr, flush=True)


def _wait(procs) -> None:
    while True:
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise ProcessError(f"{dead[0].name} exited:\n{dead[0].tail()}")
        time.sleep(0.5)
