"""The worker process: what it leaves behind when it is killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from backend.processes import start_workers
from tests.conftest import stack_env, wait_for_workers


def children(pid: int) -> set[int]:
    found = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(p) for p in path.read_text().split()}
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_a_killed_workers_scheduler_process_dies_with_it(redis_url, logs_dir):
    """`worker` forks rq's scheduler (it runs the delayed write-back flushes); SIGKILL of the worker must not
    leave it running under PID 1, where a supervisor restarting workers would pile orphans up."""
    env = stack_env(redis_url, "http://127.0.0.1:9/v1", QUEUE_NAME=f"orphans-{os.getpid()}")
    [worker] = start_workers(1, logs_dir, env, prefix="orphan-worker")
    kids: set[int] = set()
    try:
        wait_for_workers(redis_url, 1, queue=env["QUEUE_NAME"])
        assert wait(lambda: children(worker.pid), 20), "the worker started no scheduler process"
        kids = children(worker.pid)
        worker.kill()  # SIGKILL: no clean-up of its own
        assert wait(lambda: not any(running(k) for k in kids), 10), (
            f"left running after the worker's SIGKILL: {sorted(k for k in kids if running(k))}"
        )
    finally:
        for kid in kids:  # only the processes this test started, by PID
            if running(kid):
                os.kill(kid, signal.SIGKILL)
        worker.stop()
