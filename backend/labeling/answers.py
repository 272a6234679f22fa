"""Model answers to labels: tolerant parsing and strict validation against the label set (scores: probabilities.py)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.labeling.errors import InvalidAnswer
from backend.labeling.matching import match_label

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec

MAX_JSON_STARTS = 64


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability and the alternatives the server reported."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def parse_text_answer(content: str, spec: LabelingSpec) -> tuple[str, ...]:
    """Labels from a plain-text answer; InvalidAnswer if none of it is in the label set."""
    content = _strip_fences(content or "").strip()
    if not content:
        raise InvalidAnswer("empty", "the model answered nothing")
    if not spec.multiple:
        label = match_label(content.splitlines()[0] if len(content) > 200 else content, spec)
        if label is None:
            raise InvalidAnswer("out_of_set", f"{content[:120]!r} names none of {list(spec.label_values)}")
        return (label,)
    parts = [p for p in re.split(r"[;,\n]|\s\|\s", content) if p.strip()]
    labels = {match_label(part, spec) for part in parts} - {None}
    if not labels:
        raise InvalidAnswer("out_of_set", f"{content[:120]!r} names none of {list(spec.label_values)}")
    return tuple(v for v in spec.label_values if v in labels)


def parse_json_answer(content: str, spec: LabelingSpec) -> tuple[str, ...]:
    """Labels from a JSON answer (code fences and prose around it tolerated); strict on the values."""
    payload = _find_json(content or "")
    raw = _label_field(payload, spec)
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise InvalidAnswer("malformed", f"label field must be a string or a list of strings, got {raw!r}")
    labels = [match_label(v, spec) for v in values]
    if None in labels:
        bad = values[labels.index(None)]
        raise InvalidAnswer("out_of_set", f"{bad!r} is not one of {list(spec.label_values)}")
    if len(set(labels)) > 1 and not spec.multiple:
        raise InvalidAnswer("malformed", f"{len(set(labels))} labels for a single-choice control")
    return tuple(v for v in spec.label_values if v in labels)


def parse_batch_answer(content: str, spec: LabelingSpec, count: int) -> dict[int, tuple[str, ...] | InvalidAnswer]:
    """Per item number (1..count): its labels, or the InvalidAnswer that item got; a missing item is malformed."""
    payload = _find_json(content or "")
    items = payload.get("items") if isinstance(payload, dict) else None
    if not isinstance(items, dict):
        raise InvalidAnswer("malformed", 'a batch answer needs an "items" object keyed by item number')
    results: dict[int, tuple[str, ...] | InvalidAnswer] = {}
    for number in range(1, count + 1):
        value = items.get(str(number))
        if value is None:
            results[number] = InvalidAnswer("malformed", f"item {number} is missing from the batch answer")
            continue
        try:
            results[number] = parse_json_answer(json.dumps(value), spec)
        except InvalidAnswer as exc:
            results[number] = exc
    return results


def parse_structured_answer(content: str, spec: LabelingSpec, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One value per control from a JSON answer, each checked on its own against the config.

    A control whose value is missing or invalid is left empty (and noted) while the others are kept;
    InvalidAnswer only when no control has a usable value.
    """
    payload = _find_json(content or "")
    if not isinstance(payload, dict):
        raise InvalidAnswer(
            "malformed", f"expected a JSON object with one field per control, got {str(payload)[:80]!r}"
        )
    answer: dict[str, Any] = {}
    notes: dict[str, Any] = {}  # per control: why it was left empty (a string) or what check() dropped
    for control in spec.controls:
        if control.name not in payload:
            continue
        try:
            value, found = control.check(payload[control.name], text)
        except InvalidAnswer as exc:
            notes[control.name] = f"{exc.kind}: {exc.detail}"
            continue
        answer[control.name] = value
        if found:
            notes[control.name] = found
    if not answer:
        detail = "; ".join(f"{name}: {why}" for name, why in notes.items()) or "no field names a control"
        raise InvalidAnswer("out_of_set" if notes else "empty", detail[:300])
    return answer, notes


def _label_field(payload: Any, spec: LabelingSpec) -> Any:
    if isinstance(payload, (str, list)):
        return payload
    if not isinstance(payload, dict):
        raise InvalidAnswer("malformed", f"expected a JSON object, got {type(payload).__name__}")
    for key in ("labels", "label", spec.control_name, "choices", "choice", "answer"):
        if key in payload:
            return payload[key]
    raise InvalidAnswer("malformed", f"no label field in {sorted(payload)[:5]}")


def _strip_fences(content: str) -> str:
    return _fenced(content)[0]


def _fenced(content: str) -> tuple[str, int]:
    """The inside of the first code fence (or the whole answer) and where it starts in the answer."""
    match = re.search(r"```(?:[a-zA-Z]+)?\s*(.*?)```", content, flags=re.DOTALL)
    return (match.group(1), match.start(1)) if match else (content, 0)


def _find_json(content: str) -> Any:
    found = locate_json(content)
    if found is None:
        raise InvalidAnswer("malformed", f"no JSON in the answer {content[:120]!r}")
    text, _ = found
    return json.JSONDecoder().raw_decode(text)[0]


def locate_json(content: str) -> tuple[str, int] | None:
    """The answer's JSON value: (text starting with it, its offset in the answer), or None when there is none.

    Code fences and prose around the JSON are tolerated.
    """
    inner, offset = _fenced(content)
    text = inner.strip()
    offset += len(inner) - len(inner.lstrip())
    # ValueError covers JSONDecodeError and over-long integers; RecursionError, nesting past the parser's depth:
    # an answer is data from outside, and no answer may fail the job that asked for it.
    try:
        json.loads(text)
        return text, offset
    except (ValueError, RecursionError):
        pass
    # A sentence around the object: decode from the first brace that starts a valid value (the first
    # MAX_JSON_STARTS braces only: each failed try can cost a parse to the depth limit).
    decoder = json.JSONDecoder()
    for match in itertools.islice(re.finditer(r"[\[{]", text), MAX_JSON_STARTS):
        try:
            decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        return text[match.start() :], offset + match.start()
    return None
