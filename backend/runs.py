"""Background runs: pre-label a whole Label Studio project through the workers, with progress for /status and the CLI."""

from __future__ import annotations

import time
import uuid

import redis
from rq import Queue

from . import dispatch, store
from .labeling.errors import MissingText
from .costs import DEFAULT_PRICES, estimate_cost
from .demonstrations import read_project
from .projects import Contexts, register
from .studio import Studio

PREFIX = store.PREFIX
RUN_TTL = 7 * 24 * 3600
COUNTERS = ("done", "failed", "withheld", "cached", "requests", "prompt_tokens", "completion_tokens", "written_back")


def _key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


def pending_tasks(studio: Studio, project_id: int, model_version: str, missing: bool) -> dict[int, dict]:
    """Task id -> data of the unannotated tasks to label: all, or those without a prediction of this version."""
    tasks = {int(t["id"]): t.get("data") or {} for t in studio.tasks(project_id) if not t.get("total_annotations")}
    if missing and tasks:
        done = studio.predicted_task_ids(project_id, model_version)
        tasks = {t: d for t, d in tasks.items() if t not in done}
    return tasks


def start_run(connection: redis.Redis, queue: Queue, contexts: Contexts, studio: Studio, project_id: int,
              missing: bool = True, chunk_size: int = 8) -> dict:
    """Register the project from Label Studio, find the tasks to label and enqueue them; returns the run."""
    project = studio.project(project_id)
    register(connection, project_id, project["label_config"], studio_url=studio.url)
    record = store.load_project(connection, project_id)
    if not record.synced_at:  # first run, or Redis lost the demonstrations: read them before labeling
        read_project(connection, contexts.settings, contexts.get(project_id).spec, studio, project_id)
    context = contexts.get(project_id)
    tasks = pending_tasks(studio, project_id, context.model_version, missing)
    labelable = {}
    for task_id, data in tasks.items():
        try:
            context.spec.text_of(data)
            labelable[task_id] = data
        except MissingText:
            pass  # counted below as failed: a task without text gets no prediction, and says why
    run_id = uuid.uuid4().hex[:12]
    record = {"run_id": run_id, "project_id": project_id, "model_version": context.model_version,
              "model": context.labeler.prompt.model,
              "total": len(tasks), "started": time.time(), "mode": "missing" if missing else "all",
              **{c: 0 for c in COUNTERS}}
    record["failed"] = len(tasks) - len(labelable)
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_key(run_id), mapping=record)
        pipe.expire(_key(run_id), RUN_TTL)
        pipe.lpush(f"{PREFIX}:runs:{project_id}", run_id)
        pipe.ltrim(f"{PREFIX}:runs:{project_id}", 0, 19)
        pipe.execute()
    if labelable:
        request = dispatch.LabelRequest(project_id, labelable, waiter=False, run_id=run_id)
        dispatch.submit(connection, queue, request, chunk_size, contexts.settings.job_timeout)
    return run_status(connection, run_id)


def record_progress(connection: redis.Redis, run_id: str, messages: list[dict]) -> None:
    """Add a finished chunk's figures to its run (atomic across workers)."""
    if not connection.exists(_key(run_id)):
        return  # Redis lost the run: counters alone would make a run without a total
    with connection.pipeline(transaction=False) as pipe:
        pipe.hincrby(_key(run_id), "done", sum(1 for m in messages if m.get("result")))
        pipe.hincrby(_key(run_id), "failed", sum(1 for m in messages if not m.get("result")
                                                  and m.get("error") != "low_score"))
        pipe.hincrby(_key(run_id), "withheld", sum(1 for m in messages if m.get("error") == "low_score"))
        pipe.hincrby(_key(run_id), "cached", sum(1 for m in messages if m.get("cached")))
        for name in ("requests", "prompt_tokens", "completion_tokens"):
            pipe.hincrby(_key(run_id), name, sum(int(m.get(name) or 0) for m in messages))
        pipe.execute()


def record_written(connection: redis.Redis, run_id: str, count: int) -> None:
    if run_id and count and connection.exists(_key(run_id)):
        connection.hincrby(_key(run_id), "written_back", count)


def run_status(connection: redis.Redis, run_id: str, prices: dict | None = None) -> dict:
    """Counts, rate and ETA of a run; {} if Redis no longer knows it."""
    raw = {k.decode(): v.decode() for k, v in connection.hgetall(_key(run_id)).items()}
    if "total" not in raw or "started" not in raw:
        return {}  # unknown, or only counters written after Redis lost the run
    status = {k: (int(v) if k in COUNTERS + ("total", "project_id") else v) for k, v in raw.items()}
    finished = status["done"] + status["failed"] + status.get("withheld", 0)
    elapsed = max(time.time() - float(status["started"]), 1e-6)
    rate = finished / elapsed
    status.update(finished=finished, elapsed_s=round(elapsed, 1), tasks_per_s=round(rate, 2),
                  cost_usd=estimate_cost(status.get("model", ""), status["prompt_tokens"],
                                         status["completion_tokens"], prices or DEFAULT_PRICES),
                  eta_s=round((status["total"] - finished) / rate, 1) if rate and finished < status["total"] else 0.0,
                  state="finished" if finished >= status["total"] else "running")
    return status


def project_runs(connection: redis.Redis, project_id: int, limit: int = 5, prices: dict | None = None) -> list[dict]:
    ids = [r.decode() for r in connection.lrange(f"{PREFIX}:runs:{project_id}", 0, limit - 1)]
    return [s for s in (run_status(connection, r, prices) for r in ids) if s]
