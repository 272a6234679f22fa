"""Tasks of a project that have no prediction, each with its reason: what /status lists and prelabel prints.

One entry per task (the latest reason); a task that is later labeled and written leaves the list.
"""

from __future__ import annotations

import json
import time

import redis

from backend.state.redis_replies import fields
from backend.state.store import PREFIX


def _key(project_id: int) -> str:
    return f"{PREFIX}:failures:{project_id}"


def is_prediction(message: dict) -> bool:
    """An outcome that is a prediction: it has a result and no error. An empty result is one too: the model
    found nothing to mark (a span config with no entity in the text), which is an answer, not a failure."""
    return message.get("result") is not None and not message.get("error")


def record(connection: redis.Redis, project_id: int, messages: list[dict]) -> None:
    """Record the failed outcomes among messages ({task, result, error, detail, model_version}); clear the
    tasks that succeeded."""
    failed = {
        str(m["task"]): json.dumps(
            {
                "error": m.get("error"),
                "detail": m.get("detail", ""),
                "model_version": m.get("model_version", ""),
                "at": time.time(),
            }
        )
        for m in messages
        if not is_prediction(m)
    }
    succeeded = [str(m["task"]) for m in messages if is_prediction(m)]
    with connection.pipeline(transaction=False) as pipe:
        if failed:
            pipe.hset(_key(project_id), mapping=fields(failed))
        if succeeded:
            pipe.hdel(_key(project_id), *succeeded)
        pipe.execute()


def read(connection: redis.Redis, project_id: int, task_ids: list[int] | None = None) -> dict[int, dict]:
    """task -> {error, detail, model_version, at}: every listed task, or those among task_ids."""
    raw: list[tuple[int | bytes | str, bytes | str]]
    if task_ids is None:
        raw = list(connection.hgetall(_key(project_id)).items())
    else:
        values = connection.hmget(_key(project_id), [str(t) for t in task_ids])
        raw = [(t, v) for t, v in zip(task_ids, values) if v]
    return {int(task): json.loads(value) for task, value in raw}
