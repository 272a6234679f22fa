"""The automatic score threshold of a project (`"threshold": "auto"`) as stored in Redis: whether a project
uses it, and the threshold in force with its evidence. pipeline/quality.py moves it when the live figures change;
the project contexts read it here, without the quality machinery."""

from __future__ import annotations

import json
import time

import redis

from backend.state.store import PREFIX


def quality_key(project_id: int, what: str) -> str:
    """The Redis key of one piece of a project's live quality (reviews, figures, threshold, ...)."""
    return f"{PREFIX}:project:{project_id}:quality:{what}"


def uses_auto(options: dict | None) -> bool:
    return (options or {}).get("threshold") == "auto"


def applied_threshold(connection: redis.Redis, project_id: int) -> dict | None:
    """{threshold (None while not backed), evidence, since} of the automatic threshold, None before any figure."""
    raw = connection.get(quality_key(project_id, "threshold"))
    return json.loads(raw) if raw else None


def store_threshold(connection: redis.Redis, project_id: int, threshold: float | None, evidence: str) -> None:
    connection.set(
        quality_key(project_id, "threshold"),
        json.dumps({"threshold": threshold, "evidence": evidence, "since": time.time()}),
    )
