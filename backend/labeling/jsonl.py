"""JSON Lines: one object per line, with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from backend.labeling.errors import LabelingError


def objects(
    lines: Iterable[str], name: str, error: type[LabelingError] = LabelingError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; `error` names the line that is not a JSON object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{name}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise error(f"{name}:{number}: each line must be a JSON object, got {str(row)[:80]!r}")
        yield number, row
