"""Labels: named entities, each a span of the text with a label (on a Text object only).

The model quotes each entity ({"text", "label", "occurrence"}); the quote is found in the text (labeling/spans.py)
and stored as Label Studio's `start`/`end` offsets, which are Python's str indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from backend.labeling.controls.base import Control, Made, Notes, config_labels
from backend.labeling.controls.values import as_list, is_int, unwrap
from backend.labeling.errors import BadExamples, InvalidAnswer, UnsupportedConfig
from backend.labeling.matching import match_label
from backend.labeling.spans import find_spans

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag

SPAN_OBJECTS_HELP = (
    "span labels on HyperText/Paragraphs are not supported (their offsets are per DOM node/paragraph); use Text"
)
Span = tuple[int, int, str]  # start, end, label


class LabelsControl(Control):
    """A Labels tag: the value is a list of entities in text order (text, label, start, end, occurrence)."""

    TAG = "Labels"
    OBJECTS: ClassVar[tuple[str, ...] | None] = ("Text",)

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        if obj.tag not in (cls.OBJECTS or ()):
            raise UnsupportedConfig(f"{where} labels <{obj.tag} name={obj.name!r}>: {SPAN_OBJECTS_HELP}")
        return cls(
            **cls.common(interface, tag, obj),
            labels=config_labels(tag, where, "labels"),
            multiple=(tag.attr or {}).get("choice") == "multiple",
        )

    def describe(self) -> str:
        return "\n".join(
            [
                f"Field {self.name!r}: "
                'a list of the entities in the text, each {"text": ..., "label": ..., "occurrence": ...}; '
                "quote each entity exactly as it appears in the text; when the same text appears more than once, "
                '"occurrence" says which appearance (1 = the first), null means every appearance; '
                "an empty list when there is none. Labels: " + "; ".join(self.label_values),
                *self.label_lines(),
            ]
        )

    def schema(self) -> dict[str, Any]:
        entity = {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "label": {"type": "string", "enum": list(self.label_values)},
                "occurrence": {"type": ["integer", "null"], "minimum": 1},
            },
            "required": ["text", "label", "occurrence"],
            "additionalProperties": False,
        }
        return {"type": "array", "items": entity}

    def to_answer(self, value: Any) -> Any:
        return [{"text": e["text"], "label": e["label"], "occurrence": e.get("occurrence")} for e in value]

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> list[dict[str, Any]] | None:
        spans: list[Span] = []
        for value in values:
            start, end = value.get("start"), value.get("end")
            if not (is_int(start) and is_int(end) and 0 <= start < end <= len(text)):
                raise BadExamples(f"{where}: span {start!r}..{end!r} is not inside the text ({len(text)} characters)")
            stored = value.get("text")
            if isinstance(stored, str) and stored.split() != text[start:end].split():
                raise BadExamples(
                    f"{where}: span {start}..{end} is {text[start:end]!r} in the task text, "
                    f"its stored text is {stored!r}"
                )
            labels = as_list(value.get("labels"))
            self.known(labels, where)
            spans.extend((start, end, label) for label in labels)
        return self.canonical(spans, text) if spans else None

    def canonical(self, spans: Iterable[Span], text: str) -> list[dict[str, Any]]:
        """Entities in text order: the exact text at the span, its label, its offsets ("start", "end": what
        Label Studio stores), and "occurrence" when that text repeats (what a demonstration shows instead)."""
        order = {value: index for index, value in enumerate(self.label_values)}
        entities = []
        for start, end, label in sorted(set(spans), key=lambda s: (s[0], s[1], order.get(s[2], 0))):
            quote = text[start:end]
            entity: dict[str, Any] = {"text": quote, "label": label, "start": start, "end": end}
            found = find_spans(text, quote)
            if len(found) > 1 and (start, end) in found:
                entity["occurrence"] = found.index((start, end)) + 1
            entities.append(entity)
        return entities

    def check(self, value: Any, text: str) -> tuple[list[dict[str, Any]], Notes]:
        value = unwrap(value, ("entities", "spans", "labels", self.name), alone=True)
        if isinstance(value, dict):
            value = [value]
        if value is None or value == []:
            if self.required:
                raise InvalidAnswer("empty", f"no entity for the required control {self.name!r}")
            return [], {}
        if not isinstance(value, list):
            raise InvalidAnswer("malformed", f"{self.name!r} must be a list of entities, got {type(value).__name__}")
        counts = {"dropped_label": 0, "dropped_not_found": 0, "dropped_malformed": 0}
        spans: list[Span] = []
        for item in value:
            entity = _entity(item)
            if entity is None:
                counts["dropped_malformed"] += 1
                continue
            quote, raw_label, occurrence = entity
            label = match_label(raw_label, self)
            if label is None:
                counts["dropped_label"] += 1
                continue
            found = _stated_span(item, quote, text) or find_spans(text, quote, occurrence)
            if not found:
                counts["dropped_not_found"] += 1
                continue
            spans.extend((start, end, label) for start, end in found)
        notes = {key: n for key, n in counts.items() if n}
        if not spans:
            kind = "malformed" if counts["dropped_malformed"] == len(value) else "out_of_set"
            raise InvalidAnswer(kind, f"no usable entity for {self.name!r} ({notes})")
        return self.canonical(spans, text), notes

    def row_value(self, value: Any, text: str) -> Any:
        """Spans with offsets, text and labels, one per (start, end), as Label Studio has them."""
        merged: dict[tuple[int, int], list[str]] = {}
        for start, end, label in self.spans(value, text):
            merged.setdefault((start, end), []).append(label)
        return [
            {"start": start, "end": end, "text": text[start:end], "labels": labels}
            for (start, end), labels in merged.items()
        ]

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        """One region per entity occurrence, with the text it covers."""
        return [
            (control.label([label], to_name=self.to_name, start=start, end=end), {"text": text[start:end]})
            for start, end, label in self.spans(value, text)
        ]

    def spans(self, entities: list[dict[str, Any]], text: str) -> list[Span]:
        """(start, end, label) of a Labels value, in text order: its stated offsets, else where its quotes are."""
        spans = {
            (start, end, e["label"])
            for e in entities
            for start, end in _stated_span(e, e["text"], text) or find_spans(text, e["text"], e.get("occurrence"))
        }
        order = {value: index for index, value in enumerate(self.label_values)}
        return sorted(spans, key=lambda s: (s[0], s[1], order[s[2]]))


def _entity(item: Any) -> tuple[str, str, int | None] | None:
    """(quote, label, occurrence) from one entity of an answer, tolerating common shapes; None if unusable."""
    if isinstance(item, (list, tuple)) and len(item) in (2, 3) and all(isinstance(v, str) for v in item[:2]):
        item = {"text": item[0], "label": item[1], "occurrence": item[2] if len(item) == 3 else None}
    if not isinstance(item, dict):
        return None
    quote = next((item[k] for k in ("text", "quote", "span", "entity", "value") if isinstance(item.get(k), str)), None)
    label = next((item[k] for k in ("label", "type", "labels", "entity_type", "category") if k in item), None)
    if isinstance(label, list) and len(label) == 1:
        label = label[0]
    if not isinstance(quote, str) or not quote.strip() or not isinstance(label, str):
        return None
    occurrence = item.get("occurrence")
    if isinstance(occurrence, str) and occurrence.strip().isdigit():
        occurrence = int(occurrence)
    if isinstance(occurrence, float) and occurrence.is_integer():
        occurrence = int(occurrence)
    if occurrence is not None and (isinstance(occurrence, bool) or not isinstance(occurrence, int) or occurrence < 1):
        return None
    return quote, label, occurrence


def _stated_span(item: Any, quote: str, text: str) -> list[tuple[int, int]]:
    """[(start, end)] when an entity states offsets that hold exactly its quote in the text, else [].

    Canonical values (from annotations) carry the offsets Label Studio stored; they win over searching
    for the quote, which cannot tell a span inside a word from the same letters standing alone."""
    if not isinstance(item, dict):
        return []
    start, end = item.get("start"), item.get("end")
    if is_int(start) and is_int(end) and 0 <= start < end <= len(text) and text[start:end] == quote:
        return [(start, end)]
    return []
