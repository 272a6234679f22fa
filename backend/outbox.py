"""Predictions waiting to be written into Label Studio, batched per project.

Label Studio's bulk import costs about the same for 1 prediction as for 2,000 (it recounts the project),
so workers queue predictions here and one flush job per project writes them in large batches.
A flush peeks, writes, then trims: a crash between the write and the trim re-sends a batch, which the
claims and Label Studio check in `deliver` turn into no duplicate.
"""

from __future__ import annotations

import json

import redis

from .store import PREFIX

BATCH = 2000


def _key(project_id: int) -> str:
    return f"{PREFIX}:outbox:{project_id}"


def push(connection: redis.Redis, project_id: int, predictions: list[dict]) -> int:
    """Queue predictions ({task, result, score, model_version}); returns the outbox length."""
    if not predictions:
        return int(connection.llen(_key(project_id)))
    return int(connection.rpush(_key(project_id), *[json.dumps(p) for p in predictions]))


def peek(connection: redis.Redis, project_id: int, count: int = BATCH) -> list[dict]:
    return [json.loads(raw) for raw in connection.lrange(_key(project_id), 0, count - 1)]


def trim(connection: redis.Redis, project_id: int, count: int) -> None:
    connection.ltrim(_key(project_id), count, -1)


def size(connection: redis.Redis, project_id: int) -> int:
    return int(connection.llen(_key(project_id)))


def pending_key(project_id: int) -> str:
    return f"{PREFIX}:outbox-pending:{project_id}"


def flush_lock(connection: redis.Redis, project_id: int, ttl: int = 300):
    """One flusher per project at a time, across every worker machine."""
    return connection.lock(f"{PREFIX}:outbox-lock:{project_id}", timeout=ttl, blocking=False)
