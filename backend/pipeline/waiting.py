"""What an unfinished run waits for, and until when: lines for prelabel's progress and for /status.

It reads RQ's registries and the outbox without changing anything (no registry clean-up runs from here):
jobs still queued, jobs waiting for a retry, jobs whose worker stopped (they are run again once their
heartbeat ends), predictions waiting for their write-back, and whether any worker listens at all.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.utils import parse_composite_key

from backend.pipeline import outbox
from backend.state.redis_replies import scored, text
from backend.state.store import PREFIX

if TYPE_CHECKING:
    from backend.settings import Settings

WORKER_PREFIX = "fsp-"  # names of `fewshot-prelabel worker` processes, which keep an alive key
ALIVE_TTL = 10  # seconds an alive key outlives its worker's last refresh


def alive_key(worker_name: str) -> str:
    return f"{PREFIX}:worker-alive:{worker_name}"


class WorkerWatch:
    """Whether no worker has listened on a queue for `patience` seconds in a row (asked every poll)."""

    def __init__(self, queue: Queue, patience: float):
        self.queue = queue
        self.patience = patience
        self._none_since: float | None = None
        self._checked = 0.0
        self._count = 1

    def gave_up(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= 1.0:  # Worker.count reads a set and a key per worker: once a second is plenty
            self._checked, self._count = now, Worker.count(queue=self.queue)
        if self._count:
            self._none_since = None
            return False
        self._none_since = self._none_since or now
        return now - self._none_since >= self.patience


def waiting_for(connection: redis.Redis, queue: Queue, run: dict, settings: Settings) -> list[str]:
    """Plain-language lines: what the run `run` (a run_status) still waits for."""
    if not run or run.get("state") == "finished":
        return []
    lines = []
    if not Worker.count(queue=queue):
        lines.append(f"no worker listens on queue {queue.name!r}: start `fewshot-prelabel worker`")
    prefix = f"label-{run.get('request_id', '')}-"
    queued = sum(1 for job_id in queue.get_job_ids() if job_id.startswith(prefix))
    if queued:
        lines.append(f"{queued} labeling job{_s(queued)} queued")
    lines += _retries(connection, queue, prefix)
    lines += _stopped(connection, queue, prefix, settings)
    lines += _write_back(connection, run, settings)
    return lines


def _retries(connection: redis.Redis, queue: Queue, prefix: str) -> list[str]:
    registry = ScheduledJobRegistry(queue=queue)
    times = [score for member, score in scored(connection, registry.key) if member.startswith(prefix)]
    if not times:
        return []
    return [
        f"{len(times)} labeling job{_s(len(times))} failed and wait{'' if len(times) > 1 else 's'} for "
        f"a retry, the next at {_clock(min(times))}"
    ]


def _stopped(connection: redis.Redis, queue: Queue, prefix: str, settings: Settings) -> list[str]:
    """Jobs whose worker stopped answering: RQ re-queues them once their heartbeat ends."""
    registry = StartedJobRegistry(queue=queue)
    ends = []
    for member, score in scored(connection, registry.key):
        job_id, execution = parse_composite_key(member)
        if not job_id.startswith(prefix):
            continue
        worker = connection.hget(Execution(execution, job_id, connection).key, "worker_name")
        name = text(worker) if worker else ""
        if name.startswith(WORKER_PREFIX) and not connection.exists(alive_key(name)):
            ends.append(score)
    if not ends:
        return []
    return [
        f"{len(ends)} labeling job{_s(len(ends))} of a stopped worker: run again after {_clock(max(ends))} "
        f"(JOB_TIMEOUT {settings.job_timeout} s + 15 s after it started), at the next maintenance pass of a "
        f"live worker (every WORKER_MAINTENANCE {settings.worker_maintenance} s)"
    ]


def _write_back(connection: redis.Redis, run: dict, settings: Settings) -> list[str]:
    waiting = int(run.get("waiting_write_back") or 0)
    if not waiting:
        return []
    line = f"{waiting} prediction{_s(waiting)} wait{'' if waiting > 1 else 's'} for their write-back into Label Studio"
    failing = outbox.failing(connection, int(run["project_id"]))
    if failing:
        line += (
            f"; writing has failed since {_clock(failing['since'])} ({failing['detail'][:120]}), retried "
            f"until {_clock(failing['since'] + settings.write_back_timeout)} (WRITE_BACK_TIMEOUT), then "
            "listed as failed"
        )
    return [line]


def _clock(timestamp: float) -> str:
    seconds = max(0, round(timestamp - time.time()))
    return f"{datetime.fromtimestamp(timestamp).strftime('%H:%M:%S')} (in {seconds} s)"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
