"""The `prelabel` command: label a whole Label Studio project in the background, with a progress bar."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter

import redis
from rq import Queue, Worker
from tqdm import tqdm

from backend.pipeline import failures
from backend.pipeline.jobs import enqueue_flush
from backend.pipeline.launch import start_run
from backend.pipeline.projects import Contexts
from backend.pipeline.runs import failed_tasks, run_status
from backend.pipeline.waiting import WorkerWatch, waiting_for
from backend.settings import Settings, redacted
from backend.state import store
from backend.studio.client import Studio, StudioError

STALL_S = 5  # no progress for this long: say what the run waits for
KICK_S = 30  # no progress for this long and rows waiting without a flush: schedule one


def prelabel(settings: Settings, project_id: int, missing: bool, wait: bool = True) -> int:
    if not settings.studio_url or not settings.studio_api_key:
        print("error: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to pre-label a project", file=sys.stderr)
        return 2
    connection = store.connect(settings.redis_url)
    if not store.ping(connection):
        print(f"error: Redis is unreachable at {redacted(settings.redis_url)}", file=sys.stderr)
        return 2
    queue = Queue(settings.queue_name, connection=connection)
    if not Worker.count(queue=queue):
        print(
            f"warning: no worker listens on queue {queue.name!r} yet; start `fewshot-prelabel worker` "
            f"(this waits {settings.worker_wait} s for one)",
            file=sys.stderr,
        )
    studio = Studio(settings.studio_url, settings.studio_api_key.reveal(), timeout=settings.studio_timeout)
    try:
        run = start_run(
            connection, queue, Contexts(settings, connection), studio, project_id, missing, settings.chunk_size
        )
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        studio.close()
    print(
        f"run {run['run_id']}: {run['total']} tasks of project {project_id} "
        f"({'without a prediction of ' + run['model_version'] if missing else 'all'}); "
        f"progress also at GET /status?project={project_id}",
        file=sys.stderr,
    )
    if not wait:
        return 0
    try:
        final = _follow(connection, queue, settings, run, lambda: _restart(settings, connection, queue, project_id))
    except KeyboardInterrupt:
        print("\nstopped following; the run goes on in the workers", file=sys.stderr)
        return 130
    final = run_status(connection, final["run_id"], settings.price_table) or final
    print(
        " ".join(
            f"{k} {final[k]}"
            for k in (
                "total",
                "done",
                "failed",
                "withheld",
                "cached",
                "written_back",
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "elapsed_s",
            )
        )
    )
    if final["state"] != "finished":
        print(
            f"not finished: {final['total'] - final['finished']} tasks wait for a worker; the run stays queued "
            f"and goes on when one starts (GET /status?project={project_id} follows it)",
            file=sys.stderr,
        )
        return 1
    _print_failures(connection, final)
    return 0 if final["failed"] == 0 else 1


def _print_failures(connection, run: dict, shown: int = 20) -> None:
    """The run's failed tasks with their reasons: counts per reason, then the first few."""
    failed = failed_tasks(connection, run["run_id"])
    if not failed:
        return
    reasons = failures.read(connection, int(run["project_id"]), failed)
    kinds = Counter(r.get("error") or "failed" for r in reasons.values())
    print(
        f"{len(failed)} tasks without a prediction: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()),
        file=sys.stderr,
    )
    for task in failed[:shown]:
        reason = reasons.get(task, {})
        print(f"  task {task}: {reason.get('error', 'failed')}: {reason.get('detail', '')}", file=sys.stderr)
    if len(failed) > shown:
        print(f"  ... and {len(failed) - shown} more (GET /status?project={run['project_id']})", file=sys.stderr)


def _restart(settings: Settings, connection, queue, project_id: int) -> dict:
    """After Redis lost the run: read the demonstrations again and label what still has no prediction."""
    print("\nRedis lost the run (restarted without persistence?): finding unfinished tasks again", file=sys.stderr)
    with Studio(settings.studio_url, settings.studio_api_key.reveal(), timeout=settings.studio_timeout) as studio:
        return start_run(
            connection, queue, Contexts(settings, connection), studio, project_id, True, settings.chunk_size
        )


def _follow(connection, queue, settings: Settings, run: dict, restart) -> dict:
    """Follow the run until it finished, or no worker listened for WORKER_WAIT s; say what it waits for."""
    watch = WorkerWatch(queue, settings.worker_wait)
    progress, moved = None, time.monotonic()
    said: list[str] = []  # the waiting lines last shown
    with tqdm(total=run["total"], unit="task", desc="pre-labeling") as bar:
        while True:
            try:
                status = run_status(connection, run["run_id"])
                if not status:  # Redis answers but lost the run
                    run = restart()
                    bar.reset(total=run["total"])
                    continue
                bar.n = status["finished"]
                bar.set_postfix(
                    labeled=status["done"],
                    failed=status["failed"],
                    eta=f"{status['eta_s']:.0f}s",
                    tokens=status["prompt_tokens"] + status["completion_tokens"],
                    refresh=False,
                )
                bar.refresh()
                if status["state"] == "finished":
                    return status
                if watch.gave_up():
                    bar.write(
                        f"no worker has listened on queue {queue.name!r} for {settings.worker_wait} s (WORKER_WAIT)",
                        file=sys.stderr,
                    )
                    return status
                now = time.monotonic()
                if (status["finished"], status["done"]) != progress:
                    progress, moved = (status["finished"], status["done"]), now
                elif now - moved >= STALL_S:
                    said = _say_waiting(bar, waiting_for(connection, queue, status, settings), said)
                    if now - moved >= KICK_S and status["waiting_write_back"]:
                        enqueue_flush(connection, settings, int(status["project_id"]), 0)  # no-op if one is pending
            except redis.ConnectionError:
                pass  # Redis is restarting: keep asking
            time.sleep(0.5)


def _say_waiting(bar, lines: list[str], said: list[str]) -> list[str]:
    """Print what the run waits for when that changed (the countdowns in it aside)."""
    plain = [re.sub(r" \(in \d+ s\)", "", line) for line in lines]
    if plain != said:
        for line in lines:
            bar.write(f"waiting: {line}", file=sys.stderr)
    return plain
