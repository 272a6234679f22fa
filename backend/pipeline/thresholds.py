"""The automatic score threshold of a project (`"threshold": "auto"`) as stored in Redis: whether a project
uses it, and the threshold in force with its evidence. pipeline/quality.py moves it when the live figures change;
the project contexts read it here, without the quality machinery."""

from __future__ import annotations

import json
import time

import redis

from backend.state.store import PREFIX


def key(project_id: int) -> str:
    return f"{PREFIX}:project:{project_id}:quality:threshold"


def uses_auto(options: dict | None) -> bool:
    return (options or {}).get("threshold") == "auto"


def applied_threshold(connection: redis.Redis, project_id: int) -> dict | None:
    """{threshold (None while not backed), evidence, since} of the automatic threshold, None before any figure."""
    raw = connection.get(key(project_id))
    return json.loads(raw) if raw else None


def store_threshold(connection: redis.Redis, project_id: int, threshold: float | None, evidence: str) -> None:
    connection.set(key(project_id), json.dumps({"threshold": threshold, "evidence": evidence, "since": time.time()}))
