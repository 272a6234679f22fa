"""The prediction cache in Redis: content-addressed by the full LLM request, with a TTL and a size bound."""

from __future__ import annotations

import json

import redis

from backend.state.bounded import put_bounded
from backend.state.store import PREFIX

_INDEX = f"{PREFIX}:cache:index"  # sorted set: key -> time stored, to drop the oldest past the bound


def _key(request_key: str) -> str:
    return f"{PREFIX}:cache:{request_key}"


def get_many(connection: redis.Redis, request_keys: list[str]) -> list[dict | None]:
    """Cached outcomes for request keys, None where there is none."""
    if not request_keys:
        return []
    values = connection.mget([_key(k) for k in request_keys])
    return [json.loads(v) if v else None for v in values]


def put(connection: redis.Redis, request_key: str, value: dict, ttl: int, max_entries: int) -> None:
    """Store an outcome; the TTL is set in the same pipeline so no entry lives forever."""
    put_bounded(connection, _INDEX, {request_key: json.dumps(value, sort_keys=True)}, _key, ttl, max_entries)


def size(connection: redis.Redis) -> int:
    return int(connection.zcard(_INDEX))
