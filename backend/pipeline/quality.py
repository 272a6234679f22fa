"""Live quality kept in Redis: one review record per annotation, the figures added up from them, and the
threshold `"threshold": "auto"` applies; all of it rebuildable from Label Studio.

Records (one per annotation) are stored per task, so an updated annotation replaces its record and a
re-read of a task or of the whole project gives the same figures (idempotent). The figures are recomputed from the
records under a per-project lock after every change, never incremented.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import redis

from backend.evaluation.live import auto_threshold, controls_of, figures, reviews_from_tasks
from backend.pipeline import thresholds
from backend.state import redis_replies

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec
    from backend.settings import Settings

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 120


_key = thresholds.quality_key


def _by_task(found: list[dict]) -> dict[str, str]:
    """Hash fields: one per task, holding the records of its annotations (a task's re-read replaces one field)."""
    grouped: dict[str, list[dict]] = {}
    for record in found:
        grouped.setdefault(str(record["task"]), []).append(record)
    return {task: json.dumps(rows, sort_keys=True) for task, rows in grouped.items()}


# ---- records ---------------------------------------------------------------------------------------------------


def records(connection: redis.Redis, project_id: int) -> list[dict]:
    return [record for raw in connection.hvals(_key(project_id, "reviews")) for record in json.loads(raw)]


def put_task_reviews(connection: redis.Redis, project_id: int, task_ids: list[int], found: list[dict]) -> None:
    """Replace the records of these tasks with `found` (the tasks re-read from Label Studio)."""
    key = _key(project_id, "reviews")
    fields = _by_task(found)
    pipe = connection.pipeline()
    stale = [str(t) for t in task_ids if str(t) not in fields]
    if stale:
        pipe.hdel(key, *stale)
    if fields:
        pipe.hset(key, mapping=redis_replies.fields(fields))
    pipe.execute()


def remove_annotations(connection: redis.Redis, project_id: int, annotation_ids: set) -> int:
    """Drop the records of deleted annotations (a scan of every task's records: deletions are rare)."""
    key = _key(project_id, "reviews")
    removed = 0
    for task, raw in connection.hscan_iter(key, count=1000):
        rows = json.loads(raw)
        kept = [r for r in rows if r.get("annotation") not in annotation_ids]
        if len(kept) < len(rows):
            removed += len(rows) - len(kept)
            if kept:
                connection.hset(key, task, json.dumps(kept, sort_keys=True))
            else:
                connection.hdel(key, task)
    return removed


def remove_tasks(connection: redis.Redis, project_id: int, task_ids: list[int]) -> int:
    return connection.hdel(_key(project_id, "reviews"), *[str(t) for t in task_ids]) if task_ids else 0


def replace_all(connection: redis.Redis, project_id: int, found: list[dict]) -> None:
    """A full re-read's records replace every record, and mark the project as built."""
    key = _key(project_id, "reviews")
    pipe = connection.pipeline()
    pipe.delete(key)
    if found:
        pipe.hset(key, mapping=redis_replies.fields(_by_task(found)))
    pipe.set(_key(project_id, "built"), time.time())
    pipe.execute()


def built_at(connection: redis.Redis, project_id: int) -> float | None:
    raw = connection.get(_key(project_id, "built"))
    return float(raw) if raw else None


# ---- figures and the automatic threshold -----------------------------------------------------------------------


def refresh(
    connection: redis.Redis, settings: Settings, project_id: int, spec: LabelingSpec, auto: bool = False
) -> dict:
    """Recompute the figures from the records, store them, and move the automatic threshold when its
    evidence changed (logged when the project uses it); the figures stored last.

    Events that arrive while another worker recomputes only mark the figures stale: the worker holding the
    lock recomputes again before it lets go, so a burst of annotations costs a few recomputations, not one
    each (at 10,000 reviews one takes about 0.3 s; benchmarks/bench_quality.py)."""
    stale, lock = _key(project_id, "stale"), connection.lock(_key(project_id, "lock"), timeout=LOCK_TIMEOUT_S)
    connection.set(stale, 1)
    while lock.acquire(blocking=False):
        try:
            while connection.delete(stale):  # atomic: whoever deletes the mark recomputes
                found = figures(records(connection, project_id), controls_of(spec), settings.quality_target)
                connection.set(_key(project_id, "figures"), json.dumps(found))
                _move_threshold(connection, settings, project_id, found, auto)
        finally:
            lock.release()
        if not connection.exists(stale):  # marked between the last recomputation and the release: go again
            break
    return stored_figures(connection, project_id) or figures([], controls_of(spec), settings.quality_target)


def stored_figures(connection: redis.Redis, project_id: int) -> dict | None:
    raw = connection.get(_key(project_id, "figures"))
    return json.loads(raw) if raw else None


def _move_threshold(connection, settings: Settings, project_id: int, found: dict, auto: bool) -> None:
    threshold, evidence = auto_threshold(found, settings.auto_threshold_min_reviews)
    before = thresholds.applied_threshold(connection, project_id)
    if before is not None and before.get("threshold") == threshold:
        return
    thresholds.store_threshold(connection, project_id, threshold, evidence)
    if auto:
        old = before.get("threshold") if before else None
        if threshold is None:
            log.info(
                "project %s: threshold auto falls back to SCORE_THRESHOLD %g (was %s): %s",
                project_id,
                settings.score_threshold,
                old,
                evidence,
            )
        else:
            log.info(
                "project %s: threshold auto moves from %s to %.4g: %s",
                project_id,
                "SCORE_THRESHOLD" if old is None else f"{old:.4g}",
                threshold,
                evidence,
            )


# ---- reading Label Studio --------------------------------------------------------------------------------------


def read_reviews(studio, spec: LabelingSpec, project_id: int) -> tuple[list[dict], dict]:
    """Every review of the project, from its annotated tasks and its predictions (two listings)."""
    tasks = list(studio.annotated_tasks(project_id))
    by_task: dict = {}
    for prediction in studio.predictions(project_id):
        by_task.setdefault(prediction.get("task"), []).append(prediction)
    found, skipped = reviews_from_tasks(spec, tasks, {t["id"]: by_task.get(t["id"], []) for t in tasks})
    return found, dict(skipped)


def rebuild(
    connection: redis.Redis, settings: Settings, studio, spec: LabelingSpec, project_id: int, auto: bool = False
) -> dict:
    """Replace the project's records with a full re-read of Label Studio; the new figures."""
    found, skipped = read_reviews(studio, spec, project_id)
    replace_all(connection, project_id, found)
    log.info(
        "project %s: live quality rebuilt from Label Studio: %d reviews (%s not reviews)",
        project_id,
        len(found),
        ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none",
    )
    return refresh(connection, settings, project_id, spec, auto)


def review_tasks(
    connection: redis.Redis,
    settings: Settings,
    studio,
    spec: LabelingSpec,
    project_id: int,
    task_ids: list[int],
    auto: bool = False,
) -> dict:
    """Re-read these tasks (after annotation events) and replace their records; the new figures."""
    from backend.studio.client import StudioError

    tasks = []
    for task_id in task_ids:
        try:
            tasks.append(studio.task(task_id))
        except StudioError as exc:
            if exc.status != 404:
                raise  # a deleted task keeps no record; anything else is retried by the job
    found, _ = reviews_from_tasks(spec, tasks)
    put_task_reviews(connection, project_id, task_ids, found)
    return refresh(connection, settings, project_id, spec, auto)
