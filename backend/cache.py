"""The prediction cache in Redis: content-addressed by the full LLM request, with a TTL and a size bound."""

from __future__ import annotations

import json
import time

import redis

from .store import PREFIX

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
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(_key(request_key), json.dumps(value, sort_keys=True), ex=ttl)
        pipe.zadd(_INDEX, {request_key: time.time()})
        pipe.zcard(_INDEX)
        size = pipe.execute()[-1]
    if size > max_entries:
        _trim(connection, size - max_entries, ttl)


def _trim(connection: redis.Redis, excess: int, ttl: int) -> None:
    oldest = connection.zpopmin(_INDEX, excess)
    if oldest:
        connection.delete(*[_key(k.decode() if isinstance(k, bytes) else k) for k, _ in oldest])
    # Entries whose TTL ran out leave their index member behind: drop those too.
    connection.zremrangebyscore(_INDEX, 0, time.time() - ttl)


def size(connection: redis.Redis) -> int:
    return int(connection.zcard(_INDEX))
