"""Redis state shared by every web and worker process: project registry, demonstrations, prediction cache.

Nothing here is the only copy of anything: the registry is re-sent by Label Studio (/setup, /predict),
demonstrations are re-read from Label Studio, and cached predictions can be asked again.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis

from backend.state import redis_replies

PREFIX = "fsp"


def connect(url: str) -> redis.Redis:
    """A Redis connection for an entry point (everything else takes one as an argument)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)


def ping(connection: redis.Redis) -> bool:
    try:
        return bool(connection.ping())
    except redis.RedisError:
        return False


def _project_key(project_id: int) -> str:
    return f"{PREFIX}:project:{project_id}"


def _demonstrations_key(project_id: int, which: str) -> str:
    return f"{PREFIX}:project:{project_id}:demos:{which}"


# ---- project registry -------------------------------------------------------------------------


@dataclass
class ProjectRecord:
    """What the backend knows of a project; fields Label Studio re-sends fill it again after a loss."""

    project_id: int
    label_config: str = ""
    options: dict | None = None
    studio_url: str = ""
    studio_token: str = ""  # from /setup's access_token when no LABEL_STUDIO_API_KEY is set; never shown
    active_id: str = ""  # changes whenever the active demonstration set does
    live_changes: int = 0  # demonstration changes not yet in the active set
    synced_at: float = 0.0

    def __repr__(self) -> str:
        return f"ProjectRecord(project_id={self.project_id}, active_id={self.active_id!r})"


def load_project(connection: redis.Redis, project_id: int) -> ProjectRecord | None:
    raw = connection.hgetall(_project_key(project_id))
    if not raw:
        return None
    values = redis_replies.text_hash(raw)
    return ProjectRecord(
        project_id=project_id,
        label_config=values.get("label_config", ""),
        options=json.loads(values["options"]) if values.get("options") else None,
        studio_url=values.get("studio_url", ""),
        studio_token=values.get("studio_token", ""),
        active_id=values.get("active_id", ""),
        live_changes=int(values.get("live_changes", 0) or 0),
        synced_at=float(values.get("synced_at", 0) or 0),
    )


def save_project_fields(connection: redis.Redis, project_id: int, **fields) -> None:
    """Set registry fields; dict values are stored as JSON, None values are skipped."""
    mapping = {
        k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in fields.items() if v is not None
    }
    if mapping:
        connection.hset(_project_key(project_id), mapping=redis_replies.fields(mapping))
        connection.sadd(f"{PREFIX}:projects", project_id)


def forget_project(connection: redis.Redis, project_id: int) -> None:
    """Remove a project's registry entry and demonstrations (file runs clean up after themselves)."""
    connection.delete(
        _project_key(project_id), _demonstrations_key(project_id, "live"), _demonstrations_key(project_id, "active")
    )
    connection.srem(f"{PREFIX}:projects", project_id)


def project_ids(connection: redis.Redis) -> list[int]:
    return sorted(int(p) for p in connection.smembers(f"{PREFIX}:projects"))


# ---- demonstrations ---------------------------------------------------------------------------
# "live" follows Label Studio event by event; "active" is the snapshot prompts are built from and
# the model_version describes. The version policy decides when live is copied to active.


def replace_live_demonstrations(connection: redis.Redis, project_id: int, demos: dict[int, dict]) -> None:
    """Replace the whole live set (after a full read of the project)."""
    key = _demonstrations_key(project_id, "live")
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if demos:
            pipe.hset(key, mapping={str(t): json.dumps(d, sort_keys=True) for t, d in demos.items()})
        pipe.hincrby(_project_key(project_id), "live_changes", 1)
        pipe.hset(_project_key(project_id), "synced_at", time.time())
        pipe.execute()


def live_demonstration(connection: redis.Redis, project_id: int, task_id: int) -> dict | None:
    raw = connection.hget(_demonstrations_key(project_id, "live"), str(task_id))
    return json.loads(raw) if raw else None


def put_live_demonstration(connection: redis.Redis, project_id: int, task_id: int, demo: dict) -> None:
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_demonstrations_key(project_id, "live"), str(task_id), json.dumps(demo, sort_keys=True))
        pipe.hincrby(_project_key(project_id), "live_changes", 1)
        pipe.execute()


def remove_live_demonstrations(connection: redis.Redis, project_id: int, task_ids: list[int]) -> int:
    if not task_ids:
        return 0
    removed = int(connection.hdel(_demonstrations_key(project_id, "live"), *[str(t) for t in task_ids]))
    if removed:
        connection.hincrby(_project_key(project_id), "live_changes", 1)
    return removed


def activate_demonstrations(connection: redis.Redis, project_id: int) -> str:
    """Copy the live set to the active one and give it a new id; returns that id."""
    active_id = uuid.uuid4().hex[:16]
    live, active = _demonstrations_key(project_id, "live"), _demonstrations_key(project_id, "active")
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(active)
        pipe.copy(live, active, replace=True)
        pipe.hset(_project_key(project_id), mapping={"active_id": active_id, "live_changes": 0})
        pipe.sadd(f"{PREFIX}:projects", project_id)
        pipe.execute()
    return active_id


def read_demonstrations(connection: redis.Redis, project_id: int, which: str = "active") -> dict[int, dict]:
    """Task id -> demonstration of the "live" or the "active" set."""
    raw = connection.hgetall(_demonstrations_key(project_id, which))
    return {int(k): json.loads(v) for k, v in raw.items()}


def demonstration_counts(connection: redis.Redis, project_id: int) -> dict:
    return {
        "live": connection.hlen(_demonstrations_key(project_id, "live")),
        "active": connection.hlen(_demonstrations_key(project_id, "active")),
    }
