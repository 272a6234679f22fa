"""Typed views of redis-py replies, narrowed in one place.

The backend's Redis clients leave decode_responses off, so replies are bytes; redis-py types every reply as
`bytes | str` all the same (a client may decode), a scored range as either members or (member, score) pairs, and
takes a hash only as a Mapping keyed by its own union (Mapping's key type is invariant, so a dict[str, str] does not
fit it). These helpers turn replies into str and pairs, and fields into the mapping hset takes, so callers stay typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import redis
from redis.typing import EncodableT, FieldT


def text(value: bytes | str) -> str:
    """A reply as text (UTF-8, as everything this backend writes)."""
    return value.decode() if isinstance(value, bytes) else value


def text_hash(reply: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply with text fields and values."""
    return {text(field): text(value) for field, value in reply.items()}


def fields(values: Mapping[str, EncodableT]) -> dict[FieldT, EncodableT]:
    """A hash's fields in the form hset(mapping=...) is typed to take."""
    return {field: value for field, value in values.items()}


def scored(connection: redis.Redis, key: str, start: int = 0, end: int = -1) -> list[tuple[str, float]]:
    """ZRANGE ... WITHSCORES: (member, score) pairs, lowest score first."""
    # redis-py types zrange without an overload on withscores; with it the reply is (member, score) pairs.
    pairs = cast("list[tuple[bytes | str, float]]", connection.zrange(key, start, end, withscores=True))
    return [(text(member), score) for member, score in pairs]
