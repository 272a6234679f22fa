"""The `prelabel` command: label a whole Label Studio project in the background, with a progress bar."""

from __future__ import annotations

import sys
import time

import redis

from rq import Queue, Worker
from tqdm import tqdm

from . import outbox, store
from .projects import Contexts
from .runs import run_status, start_run
from .settings import Settings
from .studio import Studio, StudioError


def prelabel(settings: Settings, project_id: int, missing: bool, wait: bool = True) -> int:
    if not settings.studio_url or not settings.studio_api_key:
        print("error: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to pre-label a project", file=sys.stderr)
        return 2
    connection = store.connect(settings.redis_url)
    if not store.ping(connection):
        print(f"error: Redis is unreachable at {settings.redis_url.split('@')[-1]}", file=sys.stderr)
        return 2
    queue = Queue(settings.queue_name, connection=connection)
    if not Worker.count(queue=queue):
        print("warning: no worker listens on the queue yet; start `fewshot-prelabel worker`", file=sys.stderr)
    studio = Studio(settings.studio_url, settings.studio_api_key.reveal())
    try:
        run = start_run(connection, queue, Contexts(settings, connection), studio, project_id, missing,
                        settings.chunk_size)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        studio.close()
    print(f"run {run['run_id']}: {run['total']} tasks of project {project_id} "
          f"({'without a prediction of ' + run['model_version'] if missing else 'all'}); "
          f"progress also at GET /status?project={project_id}", file=sys.stderr)
    if not wait:
        return 0
    try:
        final = _follow(connection, run, lambda: _restart(settings, connection, queue, project_id))
    except KeyboardInterrupt:
        print("\nstopped following; the run goes on in the workers", file=sys.stderr)
        return 130
    final = run_status(connection, final["run_id"], settings.price_table) or final
    print(" ".join(f"{k} {final[k]}" for k in ("total", "done", "failed", "cached", "written_back", "requests",
                                                "prompt_tokens", "completion_tokens", "cost_usd", "elapsed_s")))
    return 0 if final["failed"] == 0 else 1


def _restart(settings: Settings, connection, queue, project_id: int) -> dict:
    """After Redis lost the run: read the demonstrations again and label what still has no prediction."""
    print("\nRedis lost the run (restarted without persistence?): finding unfinished tasks again",
          file=sys.stderr)
    with Studio(settings.studio_url, settings.studio_api_key.reveal()) as studio:
        return start_run(connection, queue, Contexts(settings, connection), studio, project_id, True,
                         settings.chunk_size)


def _follow(connection, run: dict, restart) -> dict:
    with tqdm(total=run["total"], unit="task", desc="pre-labeling") as bar:
        while True:
            try:
                status = run_status(connection, run["run_id"])
                if not status:  # Redis answers but lost the run
                    run = restart()
                    bar.reset(total=run["total"])
                    continue
                bar.n = status["finished"]
                bar.set_postfix(failed=status["failed"], eta=f"{status['eta_s']:.0f}s",
                                tokens=status["prompt_tokens"] + status["completion_tokens"], refresh=False)
                bar.refresh()
                if status["state"] == "finished" and _written(connection, run["project_id"]):
                    return status
            except redis.ConnectionError:
                pass  # Redis is restarting: keep asking
            time.sleep(0.5)


def _written(connection, project_id: int) -> bool:
    """Nothing waits in the project's write-back queue and no flush is pending."""
    return outbox.size(connection, project_id) == 0 and not connection.exists(outbox.pending_key(project_id))
