"""Labels in files: the `{"text", "label"}` row form of every supported config, read strictly, written back.

Seed files, `evaluate --input` and `export --input` read it; `label` writes it. One form per control:

    Choices   "positive" (single choice) or ["sports", "politics"] (multiple)
    Labels    [{"start": 9, "end": 14, "text": "Paris", "labels": ["LOC"]}, ...]: character offsets, end
              exclusive, in code points (Python str indexes, what Label Studio stores); "text", when given,
              must be text[start:end]. Or quotes [{"text": "Paris", "label": "LOC"}] found in the text
              (every appearance, or the n-th with "occurrence": n). In a row with "tokens" (CoNLL, WNUT-17)
              start/end are token indexes, end exclusive, and the text is the tokens joined by spaces.
              "label" or "type" may stand for "labels".
    TextArea  "a summary" or ["a summary", ...]
    Taxonomy  [["Online", "Paywall"], ...] (each path a list of stored values from the top), or one path
    Rating    4
    Number    12.5

A config with a single control takes that control's value as the row's `label`; any config may give
`{"<control name>": value, ...}`. Everything read is checked against the config through the same reader
as Label Studio annotations (`Control.from_result`), so a file cannot teach what an annotation could not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.labeling.controls.values import is_int
from backend.labeling.errors import BadExamples
from backend.labeling.spans import find_spans

if TYPE_CHECKING:
    from backend.labeling.controls.base import Control
    from backend.labeling.spec import LabelingSpec

EMPTY: tuple[Any, ...] = (None, "", [], {})  # values that say "no value"


def read_values(raw: Any, spec: LabelingSpec, text: str, tokens: Any = None, where: str = "") -> dict[str, Any]:
    """{control name: value} of a structured config, in the form annotations give (Control.from_result).

    Controls without a value are left out, except an explicit empty span list (`[]`: "no entities"), which
    is kept as []. BadExamples names `where` and what is wrong.
    """
    by_control = _by_control(raw, spec, where)
    values: dict[str, Any] = {}
    for control in spec.controls:
        if control.name not in by_control:
            continue
        value = by_control[control.name]
        if control.tag == "Labels" and value in ([], {}):
            values[control.name] = []
            continue
        if value in EMPTY:
            continue
        result = _result_items(control, value, text, tokens, where)
        try:
            read = control.from_result(result, text)
        except BadExamples as exc:
            raise BadExamples(f"{where}: {_without_where(exc)}") from exc
        if read is not None:
            values[control.name] = read
    return values


def row_label(spec: LabelingSpec, labels: tuple[str, ...] | None, values: dict[str, Any] | None, text: str) -> Any:
    """The row form of an answer: a label (or list) for a single Choices config, else {control: value}."""
    if not spec.structured:
        if not labels:
            return None
        return list(labels) if spec.multiple else labels[0]
    if values is None:
        return None
    return {c.name: row_value(c, values[c.name], text) for c in spec.controls if c.name in values}


def row_value(control: Control, value: Any, text: str) -> Any:
    """One control's value in the row form (spans with offsets, text and labels, as Label Studio has them)."""
    return control.row_value(value, text)


def _by_control(raw: Any, spec: LabelingSpec, where: str) -> dict[str, Any]:
    names = [c.name for c in spec.controls]
    if isinstance(raw, dict) and set(raw) <= set(names):
        return raw
    if len(names) == 1:
        return {names[0]: raw}
    if raw in (None, "", []):
        return {}
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(names))
        raise BadExamples(
            f'{where}: "label" has {unknown[0]!r}, which is not a control of the config; '
            f'give {{"<control name>": value}} with names from {names}'
        )
    raise BadExamples(
        f'{where}: the config has {len(names)} controls ({", ".join(names)}): "label" must be '
        f'an object {{"<control name>": value}}, got {str(raw)[:80]!r}'
    )


def _result_items(control: Control, value: Any, text: str, tokens: Any, where: str) -> list[dict[str, Any]]:
    """The value as Label Studio result items of this control, for Control.from_result to check."""
    item = {"from_name": control.name, "to_name": control.to_name}
    if control.tag == "Choices":
        return [{**item, "value": {"choices": _strings(value, control, where)}}]
    if control.tag == "Labels":
        return [{**item, "value": span} for span in _spans(control, value, text, tokens, where)]
    if control.tag == "TextArea":
        return [{**item, "value": {"text": _strings(value, control, where)}}]
    if control.tag == "Taxonomy":
        paths = value if isinstance(value, list) and all(isinstance(p, list) for p in value) else [value]
        if not all(isinstance(p, list) and p and all(isinstance(s, str) for s in p) for p in paths):
            raise BadExamples(
                f"{where}: {control.name!r} takes taxonomy paths, each a list of node values from the "
                f'top, e.g. [["Online", "Paywall"]], got {str(value)[:80]!r}'
            )
        return [{**item, "value": {"taxonomy": paths}}]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadExamples(f"{where}: {control.name!r} takes a number, got {str(value)[:80]!r}")
    return [{**item, "value": {control.tag.lower(): value}}]


def _strings(value: Any, control: Control, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadExamples(f"{where}: {control.name!r} takes a string or a list of strings, got {str(value)[:80]!r}")
    return values


def _spans(control: Control, value: Any, text: str, tokens: Any, where: str) -> list[dict[str, Any]]:
    """Label Studio span values ({start, end, labels, text?}) of a row's entities."""
    entities = [value] if isinstance(value, dict) else value
    if not isinstance(entities, list):
        raise BadExamples(f"{where}: {control.name!r} takes a list of spans, got {str(value)[:80]!r}")
    starts = _token_starts(tokens, text, where) if tokens is not None else None
    spans = []
    for entity in entities:
        if not isinstance(entity, dict):
            raise BadExamples(
                f'{where}: a span is an object {{"start", "end", "labels"}} or '
                f'{{"text", "label"}}, got {str(entity)[:80]!r}'
            )
        labels = _entity_labels(entity, control, where)
        quote = entity.get("text")
        if entity.get("start") is not None or entity.get("end") is not None:
            start, end = _offsets(entity, starts, tokens, where)
            span = {"start": start, "end": end, "labels": labels}
            if isinstance(quote, str):
                span["text"] = quote
            spans.append(span)
            continue
        found = find_spans(text, quote, entity.get("occurrence")) if isinstance(quote, str) else []
        if not found:
            raise BadExamples(
                f'{where}: span {str(entity)[:80]!r} has no offsets and its "text" is not in the row\'s text'
            )
        spans.extend({"start": start, "end": end, "labels": labels} for start, end in found)
    return spans


def _entity_labels(entity: dict[str, Any], control: Control, where: str) -> list[str]:
    raw = next((entity[k] for k in ("labels", "label", "type") if entity.get(k) is not None), None)
    labels = [raw] if isinstance(raw, str) else raw
    if not isinstance(labels, list) or not labels or not all(isinstance(v, str) for v in labels):
        raise BadExamples(
            f'{where}: span {str(entity)[:80]!r} needs "labels" (a list) or "label", with '
            f"values from {list(control.label_values)}"
        )
    return labels


def _offsets(entity: dict[str, Any], starts: list[int] | None, tokens: list[str] | None, where: str) -> tuple[int, int]:
    start, end = entity.get("start"), entity.get("end")
    if not (is_int(start) and is_int(end)):
        raise BadExamples(f"{where}: span offsets must be whole numbers, got start {start!r}, end {end!r}")
    if starts is None or tokens is None:  # character offsets; token offsets come with both
        return start, end
    if not 0 <= start < end <= len(tokens):
        raise BadExamples(f"{where}: token span {start}..{end} is not inside the row's {len(tokens)} tokens")
    return starts[start], starts[end - 1] + len(tokens[end - 1])


def _token_starts(tokens: Any, text: str, where: str) -> list[int]:
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise BadExamples(f'{where}: "tokens" must be a list of strings')
    if " ".join(tokens) != text:
        raise BadExamples(
            f'{where}: the row has "tokens", so its span offsets are token indexes, but its text is '
            'not the tokens joined by single spaces; drop "tokens" and give character offsets'
        )
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    return starts


def _without_where(exc: Exception) -> str:
    """An error from Control.from_result without its "annotation of ..." prefix (the row's place replaces it)."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("annotation of ") and ": " in text else text
