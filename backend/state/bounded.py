"""A size bound for a family of Redis keys with TTLs: a sorted-set index of key -> time stored, oldest dropped.

The prediction cache and the embedding-vector cache both use it, so neither grows without limit even when
its entries' TTLs are long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import cast

import redis

from backend.state.redis_replies import text


def put_bounded(
    connection: redis.Redis,
    index: str,
    values: Mapping[str, bytes | str],
    key_of: Callable[[str], str],
    ttl: int,
    max_entries: int,
) -> None:
    """Store values under key_of(member) with the TTL and index them, in one pipeline; past max_entries the
    oldest entries go."""
    if not values:
        return
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for member, value in values.items():
            pipe.set(key_of(member), value, ex=ttl)
        pipe.zadd(index, {member: now for member in values})
        pipe.zcard(index)
        size = pipe.execute()[-1]
    if size > max_entries:
        trim(connection, index, size - max_entries, key_of, ttl)


def trim(connection: redis.Redis, index: str, excess: int, key_of: Callable[[str], str], ttl: int) -> None:
    # ZPOPMIN replies (member, score) pairs; redis-py types it as members or pairs.
    oldest = cast("list[tuple[bytes | str, float]]", connection.zpopmin(index, excess))
    if oldest:
        connection.delete(*[key_of(text(m)) for m, _ in oldest])
    # Entries whose TTL ran out leave their index member behind: drop those too.
    connection.zremrangebyscore(index, 0, time.time() - ttl)
