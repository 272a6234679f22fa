"""Predictions waiting to be written into Label Studio: one row per (task, model_version) and project.

Label Studio's bulk import costs about the same for 1 prediction as for 2,000 (it recounts the project),
so workers queue predictions here and flush jobs write them in large batches. A row leaves the outbox only
once Label Studio holds its prediction (written now, or found there), or once it is recorded as failed:
rows are removed one by one by their (task, version) field, never by a count, so a flusher that dies, or
two flushers at once, can neither drop a row nobody wrote nor remove a row another flusher has not read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import redis

from backend.state.store import PREFIX

log = logging.getLogger(__name__)

BATCH = 2000
_PROJECTS = f"{PREFIX}:outboxes"  # ids of projects whose outbox may hold rows (for the workers' sweep)


def _key(project_id: int) -> str:
    return f"{PREFIX}:outbox:{project_id}"


def _failing_key(project_id: int) -> str:
    return f"{PREFIX}:outbox-failing:{project_id}"


def field(row: dict) -> str:
    return f"{int(row['task'])}:{row['model_version']}"


def push(connection: redis.Redis, project_id: int, predictions: list[dict]) -> int:
    """Queue predictions ({task, result, score, model_version, run}); returns the outbox size.

    A (task, version) queued again (a job run twice) replaces its row: one row, one prediction.
    """
    if predictions:
        with connection.pipeline(transaction=True) as pipe:
            pipe.hset(_key(project_id), mapping={field(p): json.dumps(p) for p in predictions})
            pipe.sadd(_PROJECTS, project_id)
            pipe.execute()
    return size(connection, project_id)


def batches(connection: redis.Redis, project_id: int, count: int = BATCH) -> Iterator[list[dict]]:
    """Every row, in batches of about `count` (a row may come twice while others remove rows)."""
    batch: list[dict] = []
    for name, raw in connection.hscan_iter(_key(project_id), count=count):
        try:
            batch.append(json.loads(raw))
        except ValueError:  # not written by push(): nothing to deliver, and it must not block the rest
            log.error("project %s: dropping an unreadable write-back row %r", project_id, name)
            connection.hdel(_key(project_id), name)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch


def remove(connection: redis.Redis, project_id: int, rows: list[dict]) -> None:
    """Rows done with: Label Studio holds their prediction, or they are recorded as failed."""
    if rows:
        fields = [field(r) for r in rows]
        with connection.pipeline(transaction=False) as pipe:
            pipe.hdel(_key(project_id), *fields)
            pipe.hdel(_failing_key(project_id), *fields)
            pipe.execute()


def size(connection: redis.Redis, project_id: int) -> int:
    return int(connection.hlen(_key(project_id)))


def rows_of_run(connection: redis.Redis, project_id: int, run_id: str) -> int:
    """Rows of one run still waiting (reads the whole outbox: for status, not for hot paths)."""
    return sum(1 for batch in batches(connection, project_id) for row in batch if row.get("run") == run_id)


def projects(connection: redis.Redis) -> list[int]:
    """Projects with rows waiting; projects whose outbox emptied are forgotten."""
    ids = []
    for raw in connection.smembers(_PROJECTS):
        project_id = int(raw)
        if size(connection, project_id):
            ids.append(project_id)
        else:
            connection.srem(_PROJECTS, raw)
    return sorted(ids)


def failing_since(connection: redis.Redis, project_id: int, rows: list[dict], detail: str) -> dict[str, float]:
    """Note a failed write of these rows; field -> when the first of their failures happened."""
    key = _failing_key(project_id)
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.hsetnx(key, field(row), json.dumps({"since": now, "detail": detail[:300]}))
        pipe.hmget(key, [field(r) for r in rows])
        found = pipe.execute()[-1]
    return {field(r): json.loads(v)["since"] if v else now for r, v in zip(rows, found)}


def failing(connection: redis.Redis, project_id: int) -> dict | None:
    """The oldest write failure still waiting for a retry: {since, detail, rows}, or None."""
    entries = [json.loads(v) for v in connection.hvals(_failing_key(project_id))]
    if not entries:
        return None
    oldest = min(entries, key=lambda e: e["since"])
    return {"since": oldest["since"], "detail": oldest["detail"], "rows": len(entries)}


def pending_key(project_id: int) -> str:
    return f"{PREFIX}:outbox-pending:{project_id}"
