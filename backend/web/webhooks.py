"""Label Studio webhook events kept in step with the live demonstrations, within the 1 s Label Studio allows.

Only Redis is touched here; anything that needs Label Studio's API (a full read, a task whose newest
annotation was deleted) is enqueued for the workers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis
from rq import Queue, Retry

from backend.labeling.errors import LabelingError
from backend.labeling.examples import example_from_task
from backend.pipeline import quality
from backend.pipeline.projects import apply_version_policy, demonstration_from_example
from backend.state import store

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec
    from backend.settings import Settings

log = logging.getLogger(__name__)

SYNC_BACKOFF_S = 30
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")


class BadEvent(ValueError):
    """A webhook body the backend cannot read."""


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def enqueue_sync(queue: Queue, project_id: int, training: bool = False):
    """One full read per project at a time (a deterministic job id de-duplicates repeated triggers)."""
    job_id = f"sync-{project_id}" + ("-training" if training else "")
    existing = queue.fetch_job(job_id)
    if existing is not None:
        status = existing.get_status(refresh=True)
        recent_failure = (
            status == "failed"
            and existing.ended_at
            and (datetime.now(UTC) - existing.ended_at.replace(tzinfo=UTC)).total_seconds() < SYNC_BACKOFF_S
        )
        if status in ("queued", "started", "scheduled", "deferred") or (recent_failure and not training):
            return existing  # running, or failed moments ago: do not hammer Label Studio
        existing.delete()
    # By dotted path: importing jobs would load the Label Studio SDK into the web process (3 s on a busy machine).
    return queue.enqueue(
        "backend.pipeline.jobs.sync_project",
        project_id,
        training,
        job_id=job_id,
        job_timeout=3600,
        result_ttl=60,
        failure_ttl=24 * 3600,
    )


def enqueue_refresh(queue: Queue, project_id: int, task_id: int) -> None:
    queue.enqueue(
        "backend.pipeline.jobs.refresh_task",
        project_id,
        task_id,
        job_id=f"refresh-{project_id}-{task_id}",
        result_ttl=60,
    )


def handle_event(
    connection: redis.Redis,
    queue: Queue,
    settings: Settings,
    spec: LabelingSpec | None,
    project_id: int,
    action: str,
    body: dict,
) -> dict:
    """Apply one event; returns what changed (for the response and the logs)."""
    if action == "START_TRAINING":
        enqueue_sync(queue, project_id, training=True)
        return {"action": action, "sync": "enqueued"}
    if action == "TASKS_DELETED":
        ids = [int(t["id"]) for t in _as_list(body.get("tasks")) if isinstance(t, dict) and "id" in t]
        changed = store.remove_live_demonstrations(connection, project_id, ids)
        if quality.remove_tasks(connection, project_id, ids):
            enqueue_quality(queue, "refresh_quality", project_id)
    elif action == "ANNOTATIONS_DELETED":
        changed = _annotations_deleted(connection, queue, project_id, body)
    elif action in ANNOTATION_EVENTS:
        if spec is None:
            raise BadEvent(f"project {project_id} has no labeling config yet; call /setup first")
        changed = _annotations_changed(connection, queue, spec, project_id, body)
        # Live quality: a worker re-reads the tasks (with their predictions) and compares, when it can reach
        # Label Studio (a backend given neither LABEL_STUDIO_URL nor a /setup hostname cannot).
        if _studio_known(connection, settings, project_id):
            enqueue_quality(queue, "review_annotations", project_id, _task_ids(body))
    else:
        return {"action": action, "ignored": True}
    moved = apply_version_policy(connection, settings, project_id) if changed else False
    return {"action": action, "changed": changed, "version_moved": moved}


def enqueue_quality(queue: Queue, job: str, project_id: int, *args) -> None:
    queue.enqueue(
        f"backend.pipeline.jobs.{job}",
        project_id,
        *args,
        result_ttl=60,
        failure_ttl=24 * 3600,
        retry=Retry(max=3, interval=[5, 30, 120]),
    )


def _studio_known(connection, settings: Settings, project_id: int) -> bool:
    if settings.studio_url:
        return True
    record = store.load_project(connection, project_id)
    return bool(record and record.studio_url)


def _task_ids(body: dict) -> list[int]:
    ids = []
    for annotation in _as_list(body.get("annotation")):
        task = annotation.get("task") if isinstance(annotation, dict) else None
        task = task.get("id") if isinstance(task, dict) else task
        if isinstance(task, int) and task not in ids:
            ids.append(task)
    return ids


def _annotations_changed(connection, queue, spec: LabelingSpec, project_id: int, body: dict) -> int:
    annotations = _as_list(body.get("annotation"))
    tasks = {int(t["id"]): t for t in _as_list(body.get("task")) if isinstance(t, dict) and "id" in t}
    changed = 0
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise BadEvent("annotation must be an object")
        task_ref = annotation.get("task")
        task_ref = task_ref.get("id") if isinstance(task_ref, dict) else task_ref
        if not isinstance(task_ref, (int, str)):
            raise BadEvent("annotation.task must be a task id or a task with an id")
        task_id = int(task_ref)
        task = tasks.get(task_id)
        if task is None:
            raise BadEvent(f"event for task {task_id} carries no task data")
        changed += _apply_annotation(connection, queue, spec, project_id, task, annotation)
    return changed


def _apply_annotation(connection, queue, spec, project_id: int, task: dict, annotation: dict) -> int:
    task_id = int(task["id"])
    current = store.live_demonstration(connection, project_id, task_id)
    try:
        example = example_from_task({**task, "annotations": [annotation]}, spec)
    except LabelingError:
        example = None
    if example is None:
        if current and current.get("annotation") == annotation.get("id"):
            # The example came from this annotation, now skipped or emptied: another one may take over.
            enqueue_refresh(queue, project_id, task_id)
        return 0
    demo = demonstration_from_example(example, annotation)
    if current and current.get("annotation") != demo["annotation"] and current["updated_at"] > demo["updated_at"]:
        return 0  # an older annotation of the same task: the newest wins
    if current and all(current.get(k) == demo.get(k) for k in ("text", "labels", "answer")):
        store.put_live_demonstration(connection, project_id, task_id, demo)  # keep the annotation id current
        return 0
    store.put_live_demonstration(connection, project_id, task_id, demo)
    return 1


def _annotations_deleted(connection, queue, project_id: int, body: dict) -> int:
    deleted = {a.get("id") for a in _as_list(body.get("annotations")) if isinstance(a, dict)}
    if not deleted:
        return 0
    if quality.remove_annotations(connection, project_id, deleted):
        enqueue_quality(queue, "refresh_quality", project_id)
    live = store.read_demonstrations(connection, project_id, "live")
    hit = [task_id for task_id, demo in live.items() if demo.get("annotation") in deleted]
    store.remove_live_demonstrations(connection, project_id, hit)
    for task_id in hit:
        enqueue_refresh(queue, project_id, task_id)  # a remaining annotation may become the example
    return len(hit)
