"""Start a background run: register the project from Label Studio, find the tasks to label (all, or those
without a prediction of the current model_version) and enqueue them; pipeline/runs.py keeps the run's record."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import redis
from rq import Queue

from backend.labeling.errors import MissingText
from backend.pipeline import dispatch, failures, runs
from backend.pipeline.demonstrations import read_project
from backend.pipeline.projects import Contexts, register
from backend.state import store

if TYPE_CHECKING:
    from backend.studio.client import Studio


def pending_tasks(studio: Studio, project_id: int, model_version: str, missing: bool) -> dict[int, dict]:
    """Task id -> data of the unannotated tasks to label: all, or those without a prediction of this version."""
    tasks = {int(t["id"]): t.get("data") or {} for t in studio.tasks(project_id) if not t.get("total_annotations")}
    if missing and tasks:
        done = studio.predicted_task_ids(project_id, model_version)
        tasks = {t: d for t, d in tasks.items() if t not in done}
    return tasks


def start_run(
    connection: redis.Redis,
    queue: Queue,
    contexts: Contexts,
    studio: Studio,
    project_id: int,
    missing: bool = True,
    chunk_size: int = 8,
) -> dict:
    """Register the project from Label Studio, find the tasks to label and enqueue them; returns the run."""
    project = studio.project(project_id)
    register(connection, project_id, project["label_config"], studio_url=studio.url)
    stored = store.load_project(connection, project_id)
    if stored is None or not stored.synced_at:  # first run, or Redis lost the demonstrations: read them first
        read_project(connection, contexts.settings, contexts.get(project_id).spec, studio, project_id)
    context = contexts.get(project_id)
    tasks = pending_tasks(studio, project_id, context.model_version, missing)
    labelable, unreadable = {}, []
    for task_id, data in tasks.items():
        try:
            context.spec.text_of(data)
            labelable[task_id] = data
        except MissingText as exc:  # no prediction for it, and /status says why
            unreadable.append(
                {
                    "task": task_id,
                    "result": None,
                    "error": "no_text",
                    "detail": str(exc),
                    "model_version": context.model_version,
                }
            )
    run_id = uuid.uuid4().hex[:12]
    fanout = dispatch.Fanout(project_id, waiter=False, run_id=run_id, model_version=context.model_version)
    run = {
        "run_id": run_id,
        "project_id": project_id,
        "model_version": context.model_version,
        "model": context.labeler.prompt.model,
        "request_id": fanout.request_id,
        "total": len(tasks),
        "started": time.time(),
        "mode": "missing" if missing else "all",
        **{c: 0 for c in runs.COUNTERS},
    }
    runs.open_run(connection, run)
    if unreadable:
        failures.record(connection, project_id, unreadable)
        runs.record_progress(connection, run_id, unreadable)
    if labelable:
        dispatch.submit(connection, queue, fanout, labelable, chunk_size, contexts.settings.job_timeout)
    return runs.run_status(connection, run_id)
