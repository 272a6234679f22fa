"""Small readers shared by the control kinds: config attributes, loose model values, number formatting."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Any, TypeGuard, TypeVar

from backend.labeling.errors import UnsupportedConfig

H = TypeVar("H", bound=Hashable)


def unwrap(value: Any, keys: tuple[str, ...], alone: bool = False) -> Any:
    """The inner value of {"label": ...}-like wrappers a model puts around a field's value (with other keys
    beside it, such as a "reason", unless `alone`: an entity object is not a wrapper)."""
    if isinstance(value, dict) and (len(value) == 1 or not alone):
        key = next((key for key in keys if key in value), None)
        if key is not None:
            return value[key]
    return value


def unique(items: Iterable[H]) -> list[H]:
    seen: set[H] = set()
    found = []
    for item in items:
        if item not in seen:
            seen.add(item)
            found.append(item)
    return found


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def positive_int(raw: Any, where: str, name: str) -> int | None:
    """A config attribute that must be a whole number of at least 1, or None when it is not set."""
    if raw is None or str(raw).strip() == "":
        return None
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a whole number") from None
    if number < 1:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be at least 1")
    return number


def finite_float(raw: Any, where: str, name: str) -> float | None:
    """A config attribute that must be a finite number, or None when it is not set."""
    if raw is None or str(raw).strip() == "":
        return None
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a number") from None
    if not math.isfinite(number):
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a finite number")
    return number


def plain(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def fmt(number: Any) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)
