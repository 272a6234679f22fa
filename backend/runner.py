"""The `run` command: the whole backend on one machine (Redis if none is reachable, rq workers, gunicorn)."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from . import store
from .processes import ProcessError, backend_env, spawn, start_redis, start_workers, stop_all
from .settings import Settings


def run_stack(settings: Settings, workers: int, log_dir: Path | None = None) -> int:
    """Start everything, print where it is, and stop everything it started on Ctrl-C or SIGTERM."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="fewshot-run-"))
    started = []
    env = backend_env()
    try:
        if not store.ping(store.connect(settings.redis_url)):
            port = urlparse(settings.redis_url).port or 6379
            redis_proc, url = start_redis(log_dir, port=port)
            started.append(redis_proc)
            env["REDIS_URL"] = url
            print(f"started redis-server on {url} (no Redis was reachable at {settings.redis_url})", flush=True)
        started += start_workers(workers, log_dir, env)
        backend = spawn("backend", [sys.executable, "-m", "backend.cli", "serve"], log_dir, env)
        started.append(backend)
        print(f"backend on http://{settings.host}:{settings.port} with {workers} rq workers; logs in {log_dir}",
              flush=True)
        if not settings.openai_base_url and not settings.openai_api_key:
            print("warning: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set: every LLM call will fail",
                  file=sys.stderr, flush=True)
        _wait(started)
        return 0
    except ProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all(started)


def _wait(procs) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            dead = [p for p in procs if not p.alive()]
            if dead:
                raise ProcessError(f"{dead[0].name} exited:\n{dead[0].tail()}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
