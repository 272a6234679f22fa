"""Control tags the labeler can answer: how each is described, its answer schema, and its values.

One `Control` per supported control tag of a labeling config (Choices, Labels, TextArea, Taxonomy, Rating,
Number) on one Text, HyperText or Paragraphs object. For each it knows how to

- describe the field to the model (`describe`) and give the JSON schema of its answer (`schema`);
- read its value from a Label Studio annotation, in the form the model answers (`from_result`);
- check a model's value: parsed tolerantly, validated strictly, nothing outside the config ever (`check`);
- turn a value into Label Studio result items (`regions`), built through the SDK's LabelInterface.

Span offsets: Label Studio's Text tag stores `start`/`end` in Unicode code points (the editor converts the
browser's UTF-16 positions with `[...text]`, see `charsToCodePoints` in its selection tools), which are
Python's `str` indexes: `text[start:end]` is the region's text, emoji and all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from .errors import BadExamples, LabelingError, UnsupportedConfig

SUPPORTED_TAGS = ("Choices", "Labels", "TextArea", "Taxonomy", "Rating", "Number")
SUPPORTED_OBJECTS = ("Text", "HyperText", "Paragraphs")
# Controls that annotators use on top of a prediction and that a prediction may leave out.
IGNORED_TAGS = ("Relations",)
SUPPORTED_HELP = (
    "supported: Choices, Labels, TextArea, Taxonomy, Rating and Number controls, all on one Text, "
    "HyperText or Paragraphs object (Labels on Text only)"
)
SPAN_OBJECTS_HELP = (
    "span labels on HyperText/Paragraphs are not supported (their offsets are per DOM node/paragraph); use Text"
)
DEFAULT_MAX_RATING = 5
TAXONOMY_SPLIT = re.compile(r"\s*(?:/|>|\\|::|→)\s*")


# --- imports from sibling modules that import spec (spec will import this module) -----------------------

def _invalid(kind: str, detail: str) -> Exception:
    from .answers import InvalidAnswer

    return InvalidAnswer(kind, detail)


def _match(raw: str, options: "_Options") -> str | None:
    from .answers import match_label

    return match_label(raw, options)


class _Options:
    """A label set in the shape answers.match_label reads (`labels`, `label_values`)."""

    def __init__(self, labels: Iterable) -> None:
        self.labels = tuple(labels)
        self.label_values = tuple(label.value for label in self.labels)


# --- Control ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """One control tag of the config and everything the labeler needs to answer it."""

    name: str  # the control's name: from_name in results and the answer's field name
    tag: str  # "Choices" | "Labels" | "TextArea" | "Taxonomy" | "Rating" | "Number"
    to_name: str  # the object it labels
    labels: tuple = ()  # spec.Label: Choices' choices, Labels' labels, Taxonomy's nodes (value = stored value)
    multiple: bool = False  # Choices choice="multiple"; Taxonomy unless maxUsages="1"
    minimum: float | None = None  # Number min; Rating 1
    maximum: float | None = None  # Number max; Rating maxRating (default 5)
    max_submissions: int | None = None  # TextArea maxSubmissions; Taxonomy maxUsages (paths at most)
    placeholder: str = ""  # TextArea placeholder, an instruction for that field
    tree: tuple = ()  # Taxonomy: ((value, children), ...) with children in the same form
    step: float | None = None  # Number step, when the config sets one
    leafs_only: bool = False  # Taxonomy leafsOnly: every path ends at a leaf
    required: bool = False  # required="true": an empty answer is not an answer
    object_tag: str = "Text"  # Text | HyperText | Paragraphs
    config: str = field(default="", repr=False, compare=False)  # the labeling config, for the SDK

    @property
    def label_values(self) -> tuple[str, ...]:
        return tuple(label.value for label in self.labels)

    # -- prompt ------------------------------------------------------------------------------------

    def describe(self) -> str:
        """A few lines for the system instruction: what to answer in this control's field."""
        head = f"Field {self.name!r}: "
        if self.tag == "Choices":
            what = "every label that applies (a list)" if self.multiple else "exactly one label"
            return "\n".join([head + what + " from: " + "; ".join(self.label_values), *self._label_lines()])
        if self.tag == "Labels":
            return "\n".join([
                head + 'a list of the entities in the text, each {"text": ..., "label": ..., "occurrence": ...}; '
                "quote each entity exactly as it appears in the text; when the same text appears more than once, "
                '"occurrence" says which appearance (1 = the first), null means every appearance; '
                "an empty list when there is none. Labels: " + "; ".join(self.label_values),
                *self._label_lines(),
            ])
        if self.tag == "TextArea":
            count = f"at most {self.max_submissions} " if self.max_submissions else ""
            lines = [head + f"a list of {count}free-text answers"]
            if self.placeholder:
                lines.append(f"Instruction for {self.name!r}: {self.placeholder}")
            return "\n".join(lines)
        if self.tag == "Taxonomy":
            if self.multiple:
                many = f"up to {self.max_submissions} paths" if self.max_submissions else "one or more paths"
            else:
                many = "exactly one path"
            end = ", each ending at a leaf" if self.leafs_only else ""
            lines = [head + f"{many} through this tree{end}, each a list of node names from the top level down:"]
            hints = {label.value: label for label in self.labels}
            lines.extend(_tree_lines(self.tree, hints, depth=1))
            return "\n".join(lines)
        if self.tag == "Rating":
            return head + f"an integer rating from 1 to {int(self.maximum or DEFAULT_MAX_RATING)}"
        if self.tag == "Number":
            kind = "an integer" if self._integer_only() else "a number"
            bounds = []
            if self.minimum is not None:
                bounds.append(f"at least {_fmt(self.minimum)}")
            if self.maximum is not None:
                bounds.append(f"at most {_fmt(self.maximum)}")
            if self.step is not None and not self._integer_only():
                bounds.append(f"in steps of {_fmt(self.step)}")
            return head + kind + (" " + ", ".join(bounds) if bounds else "")
        raise LabelingError(f"no description for control tag {self.tag!r}")

    def _label_lines(self) -> list[str]:
        lines = []
        for label in self.labels:
            described = [part for part in (label.name if label.name != label.value else "", label.hint) if part]
            if described:
                lines.append(f"- {label.value}: {' - '.join(described)}")
        return lines

    def schema(self) -> dict:
        """The JSON schema of this field's answer (strict-mode friendly: every object property required)."""
        enum = {"type": "string", "enum": list(self.label_values)}
        if self.tag == "Choices":
            return {"type": "array", "items": enum, "minItems": 1} if self.multiple else enum
        if self.tag == "Labels":
            entity = {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "label": enum,
                    "occurrence": {"type": ["integer", "null"], "minimum": 1},
                },
                "required": ["text", "label", "occurrence"],
                "additionalProperties": False,
            }
            return {"type": "array", "items": entity}
        if self.tag == "TextArea":
            schema = {"type": "array", "items": {"type": "string"}}
            if self.max_submissions:
                schema["maxItems"] = self.max_submissions
            if self.required:
                schema["minItems"] = 1
            return schema
        if self.tag == "Taxonomy":
            path = {"type": "array", "items": enum, "minItems": 1}
            schema = {"type": "array", "items": path, "minItems": 1}
            most = self.max_submissions if self.multiple else 1
            if most:
                schema["maxItems"] = most
            return schema
        if self.tag == "Rating":
            return {"type": "integer", "minimum": 1, "maximum": int(self.maximum or DEFAULT_MAX_RATING)}
        if self.tag == "Number":
            schema = {"type": "integer" if self._integer_only() else "number"}
            if self.minimum is not None:
                schema["minimum"] = _plain(self.minimum)
            if self.maximum is not None:
                schema["maximum"] = _plain(self.maximum)
            return schema
        raise LabelingError(f"no schema for control tag {self.tag!r}")

    def to_answer(self, value: Any) -> Any:
        """A value (from from_result or check) in the exact form of schema(): what a demonstration shows."""
        if self.tag == "Choices" and not self.multiple:
            return value[0]
        if self.tag == "Labels":
            return [{"text": e["text"], "label": e["label"], "occurrence": e.get("occurrence")} for e in value]
        return value

    # -- annotations ---------------------------------------------------------------------------------

    def from_result(self, result: list[dict], text: str) -> Any | None:
        """This control's value in an annotation's `result`, in the form check() returns; None if it has none.

        BadExamples when the annotation holds something this config cannot express (a label it no longer
        has, offsets outside the text): such an annotation makes a wrong demonstration.
        """
        values = [item.get("value") for item in result or []
                  if isinstance(item, dict) and item.get("from_name") == self.name
                  and item.get("to_name", self.to_name) == self.to_name and isinstance(item.get("value"), dict)]
        if not values:
            return None
        where = f"annotation of {self.tag} {self.name!r}"
        if self.tag == "Choices":
            chosen = [c for v in values for c in _as_list(v.get("choices"))]
            if not chosen:
                return None
            self._known(chosen, where)
            if len(set(chosen)) > 1 and not self.multiple:
                raise BadExamples(f"{where}: {len(set(chosen))} choices {chosen!r} for a single-choice control")
            return [v for v in self.label_values if v in chosen]
        if self.tag == "Labels":
            return self._entities_from_result(values, text, where)
        if self.tag == "TextArea":
            texts = [t.strip() for v in values for t in _as_list(v.get("text")) if isinstance(t, str) and t.strip()]
            return texts or None
        if self.tag == "Taxonomy":
            paths = [p for v in values for p in _as_list(v.get("taxonomy"))]
            if not paths:
                return None
            for path in paths:
                if not isinstance(path, list) or _walk(self.tree, path) is None:
                    raise BadExamples(f"{where}: path {path!r} is not in the config's taxonomy")
            return [list(p) for p in _unique(tuple(p) for p in paths)]
        if self.tag in ("Rating", "Number"):
            key = self.tag.lower()
            raw = next((v[key] for v in values if v.get(key) is not None), None)
            if raw is None or self.tag == "Rating" and raw == 0:  # a rating of 0 is no rating
                return None
            try:
                return self._number(raw)
            except LabelingError as exc:
                raise BadExamples(f"{where}: {exc}") from exc
        raise LabelingError(f"cannot read control tag {self.tag!r}")

    def _known(self, labels: list, where: str) -> None:
        unknown = [label for label in labels if label not in self.label_values]
        if unknown:
            raise BadExamples(f"{where}: label {unknown[0]!r} is not in the config's {list(self.label_values)}")

    def _entities_from_result(self, values: list[dict], text: str, where: str) -> list[dict] | None:
        spans = []
        for value in values:
            start, end = value.get("start"), value.get("end")
            if not (_is_int(start) and _is_int(end) and 0 <= start < end <= len(text)):
                raise BadExamples(f"{where}: span {start!r}..{end!r} is not inside the text ({len(text)} characters)")
            stored = value.get("text")
            if isinstance(stored, str) and stored.split() != text[start:end].split():
                raise BadExamples(f"{where}: span {start}..{end} is {text[start:end]!r} in the task text, "
                                  f"its stored text is {stored!r}")
            labels = _as_list(value.get("labels"))
            self._known(labels, where)
            spans.extend((start, end, label) for label in labels)
        return self._canonical(spans, text) if spans else None

    def _canonical(self, spans: Iterable[tuple[int, int, str]], text: str) -> list[dict]:
        """Entities in text order: the exact text at the span, its label, its offsets ("start", "end": what
        Label Studio stores), and "occurrence" when that text repeats (what a demonstration shows instead)."""
        order = {value: index for index, value in enumerate(self.label_values)}
        entities = []
        for start, end, label in sorted(set(spans), key=lambda s: (s[0], s[1], order.get(s[2], 0))):
            quote = text[start:end]
            entity = {"text": quote, "label": label, "start": start, "end": end}
            found = find_spans(text, quote)
            if len(found) > 1 and (start, end) in found:
                entity["occurrence"] = found.index((start, end)) + 1
            entities.append(entity)
        return entities

    # -- model answers --------------------------------------------------------------------------------

    def check(self, value: Any, text: str) -> tuple[Any, dict]:
        """(cleaned value, notes): the value in from_result's form, and counts of what was dropped (empty if
        nothing was). InvalidAnswer ("malformed", "out_of_set", "empty") when nothing usable remains."""
        if self.tag == "Choices":
            return self._check_choices(value), {}
        if self.tag == "Labels":
            return self._check_entities(value, text)
        if self.tag == "TextArea":
            return self._check_texts(value)
        if self.tag == "Taxonomy":
            return self._check_paths(value), {}
        if self.tag in ("Rating", "Number"):
            return self._check_number(value), {}
        raise LabelingError(f"cannot check control tag {self.tag!r}")

    def _check_choices(self, value: Any) -> list[str]:
        value = _unwrap(value, ("labels", "label", "choices", "choice", self.name))
        options = _Options(self.labels)
        if isinstance(value, str) and not value.strip():
            value = None
        if isinstance(value, str):
            whole = _match(value, options)
            if whole is not None:
                value = [whole]
            elif self.multiple:
                value = [part for part in re.split(r"[;,\n]|\s\|\s", value) if part.strip()]
            else:
                value = [value]
        if value is None or value == []:
            raise _invalid("empty", f"no label for {self.name!r}")
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise _invalid("malformed", f"{self.name!r} must be a label or a list of labels, got {str(value)[:80]}")
        labels = []
        for raw in value:
            label = _match(str(raw), options)
            if label is None:
                raise _invalid("out_of_set", f"{str(raw)[:80]!r} is not one of {list(self.label_values)}")
            labels.append(label)
        if len(set(labels)) > 1 and not self.multiple:
            raise _invalid("malformed", f"{len(set(labels))} labels for the single-choice control {self.name!r}")
        return [v for v in self.label_values if v in labels]

    def _check_entities(self, value: Any, text: str) -> tuple[list[dict], dict]:
        value = _unwrap(value, ("entities", "spans", "labels", self.name), alone=True)
        if isinstance(value, dict):
            value = [value]
        if value is None or value == []:
            if self.required:
                raise _invalid("empty", f"no entity for the required control {self.name!r}")
            return [], {}
        if not isinstance(value, list):
            raise _invalid("malformed", f"{self.name!r} must be a list of entities, got {type(value).__name__}")
        options = _Options(self.labels)
        counts = {"dropped_label": 0, "dropped_not_found": 0, "dropped_malformed": 0}
        spans = []
        for item in value:
            entity = _entity(item)
            if entity is None:
                counts["dropped_malformed"] += 1
                continue
            quote, raw_label, occurrence = entity
            label = _match(raw_label, options)
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
            raise _invalid(kind, f"no usable entity for {self.name!r} ({notes})")
        return self._canonical(spans, text), notes

    def _check_texts(self, value: Any) -> tuple[list[str], dict]:
        value = _unwrap(value, ("text", "texts", "answer", self.name))
        if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [] if value is None else [value]
        if not isinstance(value, list):
            raise _invalid("malformed", f"{self.name!r} must be a list of strings, got {type(value).__name__}")
        texts, dropped = [], 0
        for item in value:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = _fmt(item)
            if not isinstance(item, str) or not item.strip():
                dropped += 1
                continue
            texts.append(item.strip())
        notes = {"dropped_empty": dropped} if dropped else {}
        if self.max_submissions and len(texts) > self.max_submissions:
            notes["cut"] = len(texts) - self.max_submissions
            texts = texts[: self.max_submissions]
        if not texts and (value or self.required):
            raise _invalid("empty", f"no text for {self.name!r}")
        return texts, notes

    def _check_paths(self, value: Any) -> list[list[str]]:
        value = _unwrap(value, ("taxonomy", "paths", "path", self.name))
        if value is None or value == [] or isinstance(value, str) and not value.strip():
            raise _invalid("empty", f"no taxonomy path for {self.name!r}")
        labels = {label.value: label for label in self.labels}
        if isinstance(value, str):
            candidates = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            # ["A", "B"] is one path when it walks the tree, else several one-string paths.
            single = _resolve_path(self.tree, value, labels)
            candidates = [value] if single is not None else list(value)
        elif isinstance(value, list):
            candidates = value
        else:
            raise _invalid("malformed", f"{self.name!r} must be a list of paths, got {type(value).__name__}")
        paths = []
        for candidate in candidates:
            if isinstance(candidate, str):
                path = _resolve_path(self.tree, [s for s in TAXONOMY_SPLIT.split(candidate.strip()) if s], labels)
                if path is None:
                    path = _resolve_leaf(self.tree, candidate, labels)
            elif isinstance(candidate, list) and candidate and all(isinstance(s, str) for s in candidate):
                path = _resolve_path(self.tree, candidate, labels)
            else:
                raise _invalid("malformed", f"a taxonomy path is a list of node names, got {str(candidate)[:80]}")
            if path is None:
                raise _invalid("out_of_set", f"{str(candidate)[:80]} is not a path of the {self.name!r} taxonomy")
            if self.leafs_only and _walk(self.tree, path):
                raise _invalid("out_of_set", f"{path!r} does not end at a leaf ({self.name!r} has leafsOnly)")
            paths.append(path)
        paths = [list(p) for p in _unique(tuple(p) for p in paths)]
        most = self.max_submissions if self.multiple else 1
        if most and len(paths) > most:
            raise _invalid("malformed", f"{len(paths)} paths for {self.name!r}, which allows {most}")
        return paths

    def _check_number(self, value: Any) -> int | float:
        value = _unwrap(value, (self.tag.lower(), "value", self.name))
        if value is None or value == "":
            raise _invalid("empty", f"no {self.tag.lower()} for {self.name!r}")
        try:
            return self._number(value)
        except _OutOfRange as exc:
            raise _invalid("out_of_set", str(exc)) from exc
        except LabelingError as exc:
            raise _invalid("malformed", str(exc)) from exc

    def _number(self, raw: Any) -> int | float:
        """A number from a value (strings like "4", "4/5", "4 stars" tolerated), in range, else an error."""
        if isinstance(raw, bool):
            raise LabelingError(f"{raw!r} is not a number")
        if isinstance(raw, str):
            raw = _number_in(raw, self.maximum if self.tag == "Rating" else None)
        try:
            finite = isinstance(raw, (int, float)) and math.isfinite(raw)
        except OverflowError:  # an integer past float's range
            finite = False
        if not finite:
            raise LabelingError(f"{str(raw)[:40]!r} is not a finite number")
        number = int(raw) if float(raw).is_integer() and abs(raw) < 2 ** 53 else float(raw)
        if self.tag == "Rating":
            top = int(self.maximum or DEFAULT_MAX_RATING)
            if not isinstance(number, int) or not 1 <= number <= top:
                raise _OutOfRange(f"rating {_fmt(raw)} is not an integer from 1 to {top}")
            return number
        if self.minimum is not None and number < self.minimum:
            raise _OutOfRange(f"{_fmt(number)} is below the minimum {_fmt(self.minimum)} of {self.name!r}")
        if self.maximum is not None and number > self.maximum:
            raise _OutOfRange(f"{_fmt(number)} is above the maximum {_fmt(self.maximum)} of {self.name!r}")
        if self.step:
            steps = (number - (self.minimum or 0)) / self.step
            if abs(steps - round(steps)) > 1e-9:
                raise _OutOfRange(f"{_fmt(number)} is not on the step {_fmt(self.step)} of {self.name!r}")
        return number

    def _integer_only(self) -> bool:
        # An explicit integer step from an integer (or no) minimum only reaches integers.
        return (self.step is not None and float(self.step).is_integer()
                and (self.minimum is None or float(self.minimum).is_integer()))

    # -- results ------------------------------------------------------------------------------------

    def regions(self, value: Any, text: str) -> list[dict]:
        """Label Studio result items (no "id") for a value; the value is checked again first, so nothing
        outside the config is ever emitted. Labels: one region per entity occurrence."""
        value, _notes = self.check(value, text)
        control = _sdk_control(self.config, self.name) if self.config else None
        if control is None:
            raise LabelingError(f"control {self.name!r} was not made by parse_controls (no config to build from)")
        try:
            if self.tag == "Choices":
                made = [control.label(value if self.multiple else value[0], to_name=self.to_name)]
            elif self.tag == "Labels":
                made = []
                for start, end, label in self.spans(value, text):
                    region = control.label([label], to_name=self.to_name, start=start, end=end)
                    made.append((region, {"text": text[start:end]}))
            elif self.tag == "TextArea":
                made = [control.label(value, to_name=self.to_name)] if value else []
            elif self.tag == "Taxonomy":
                made = [control.label(to_name=self.to_name, taxonomy=value)]
            elif self.tag == "Rating":
                made = [control.label(to_name=self.to_name, rating=value)]
            else:
                made = [control.label(to_name=self.to_name, number=value)]
        except ValueError as exc:  # the SDK refuses labels its config does not define
            raise LabelingError(f"{self.name!r}: {value!r} does not fit the config: {exc}") from exc
        items = []
        for region in made:
            region, extra = region if isinstance(region, tuple) else (region, {})
            item = region._dict()  # the SDK's own serializer for one region
            item.pop("id", None)  # Label Studio assigns ids; a stable result also hashes stably
            item["value"].update(extra)
            items.append(item)
        return items

    def spans(self, entities: list[dict], text: str) -> list[tuple[int, int, str]]:
        """(start, end, label) of a Labels value, in text order: its stated offsets, else where its quotes are."""
        spans = {(start, end, e["label"]) for e in entities
                 for start, end in _stated_span(e, e["text"], text) or find_spans(text, e["text"], e.get("occurrence"))}
        order = {value: index for index, value in enumerate(self.label_values)}
        return sorted(spans, key=lambda s: (s[0], s[1], order[s[2]]))


class _OutOfRange(LabelingError):
    """A number outside the control's range or step."""


# --- parsing the config ----------------------------------------------------------------------------

def parse_controls(interface) -> tuple[Control, ...]:
    """Every control of a config (a LabelInterface), in config order; UnsupportedConfig names what is not."""
    controls = [c for c in (interface.controls or []) if c.tag not in IGNORED_TAGS]
    if not controls:
        raise UnsupportedConfig(f"the labeling config has no control tag; {SUPPORTED_HELP}")
    parsed = []
    for control in controls:
        where = f"control <{control.tag} name={control.name!r}>"
        if control.tag not in SUPPORTED_TAGS:
            raise UnsupportedConfig(f"{where} is not supported; {SUPPORTED_HELP}")
        refuse_per_region(control, where)
        obj = _object_of(interface, control, where)
        if control.tag == "Labels" and obj.tag != "Text":
            raise UnsupportedConfig(f"{where} labels <{obj.tag} name={obj.name!r}>: {SPAN_OBJECTS_HELP}")
        parsed.append(_control(interface, control, obj, where))
    targets = sorted({c.to_name for c in parsed})
    if len(targets) > 1:
        raise UnsupportedConfig(f"the controls label {len(targets)} objects ({', '.join(map(repr, targets))}); "
                                f"{SUPPORTED_HELP}")
    return tuple(parsed)


def refuse_per_region(control, where: str) -> None:
    """UnsupportedConfig for perRegion/perItem controls: they answer per region or item, not per task."""
    for attr in ("perRegion", "perItem"):
        if str((control.attr or {}).get(attr, "")).lower() == "true":
            raise UnsupportedConfig(f"{where} has {attr}=\"true\": per-region and per-item answers are "
                                    f"not supported; {SUPPORTED_HELP}")


def _object_of(interface, control, where: str):
    from .spec import config_inventory

    objects = list(control.objects or [])
    if len(objects) != 1:
        raise UnsupportedConfig(f"{where} must point (toName) at exactly one object, got {control.to_name!r} "
                                f"({config_inventory(interface)}); {SUPPORTED_HELP}")
    obj = objects[0]
    if obj.tag not in SUPPORTED_OBJECTS:
        raise UnsupportedConfig(f"{where} labels object <{obj.tag} name={obj.name!r}>, which is not supported; "
                                f"{SUPPORTED_HELP}")
    return obj


def _control(interface, control, obj, where: str) -> Control:
    attr = control.attr or {}
    common = {"name": control.name, "tag": control.tag, "to_name": obj.name, "object_tag": obj.tag,
              "required": _true(attr.get("required")), "config": interface.config}
    if control.tag in ("Choices", "Labels"):
        labels = _labels(control)
        if not labels:
            dynamic = " (labels from task data, value=\"$...\", are not supported)" if attr.get("value") else ""
            raise UnsupportedConfig(f"{where} has no {'choices' if control.tag == 'Choices' else 'labels'}{dynamic}")
        return Control(**common, labels=labels, multiple=attr.get("choice") == "multiple")
    if control.tag == "TextArea":
        return Control(**common, placeholder=attr.get("placeholder", "").strip(),
                       max_submissions=_positive_int(attr.get("maxSubmissions"), where, "maxSubmissions"))
    if control.tag == "Taxonomy":
        if attr.get("apiUrl") or _true(attr.get("labeling")):
            what = "apiUrl" if attr.get("apiUrl") else 'labeling="true"'
            raise UnsupportedConfig(f"{where} has {what}: only a taxonomy written out in the config with "
                                    f"<Choice> tags, classifying the whole object, is supported")
        tree, labels = _taxonomy(interface, control)
        if not tree:
            raise UnsupportedConfig(f"{where} has no <Choice> nodes")
        most = _positive_int(attr.get("maxUsages"), where, "maxUsages")
        return Control(**common, labels=labels, tree=tree, multiple=most != 1, max_submissions=most,
                       leafs_only=_true(attr.get("leafsOnly")))
    if control.tag == "Rating":
        top = _positive_int(attr.get("maxRating"), where, "maxRating") or DEFAULT_MAX_RATING
        return Control(**common, minimum=1, maximum=top)
    low, high = _float(attr.get("min"), where, "min"), _float(attr.get("max"), where, "max")
    step = _float(attr.get("step"), where, "step")
    if low is not None and high is not None and low > high:
        raise UnsupportedConfig(f"{where} has min {_fmt(low)} above max {_fmt(high)}")
    if step is not None and step <= 0:
        raise UnsupportedConfig(f"{where} has step={attr.get('step')!r}; a step must be positive")
    return Control(**common, minimum=low, maximum=high, step=step)


def _labels(control) -> tuple:
    from .spec import Label

    labels = []
    for value, tag in (control.labels_attrs or {}).items():
        attr = tag.attr or {}
        labels.append(Label(value=value, name=attr.get("value", value), hint=attr.get("hint", "")))
    return tuple(labels)


def _taxonomy(interface, control) -> tuple[tuple, tuple]:
    from .spec import Label

    root = _xml_tree(interface)
    element = next((e for e in root.iter("Taxonomy") if e.get("name") == control.name), None)
    labels: dict[str, Any] = {}

    def choices(parent) -> list:
        found = []
        for child in parent:
            if not isinstance(child.tag, str):  # comments, processing instructions
                continue
            found.extend([child] if child.tag == "Choice" else choices(child))  # through a grouping <View>
        return found

    def nodes(parent) -> tuple:
        found, seen = [], set()
        for child in choices(parent):
            value = child.get("alias") or child.get("value")
            if value is None or value in seen:  # the editor keeps the first of equal siblings only
                continue
            seen.add(value)
            labels.setdefault(value, Label(value=value, name=child.get("value", value), hint=child.get("hint", "")))
            found.append((value, nodes(child)))
        return tuple(found)

    tree = nodes(element) if element is not None else ()
    return tree, tuple(labels.values())


def _xml_tree(interface):
    tree = getattr(interface, "_tree", None)  # the SDK keeps the parsed lxml tree
    if tree is None:
        from lxml import etree

        tree = etree.fromstring(interface.config.encode("utf-8"))
    return tree


@lru_cache(maxsize=256)
def _interface(config: str):
    from label_studio_sdk.label_interface import LabelInterface

    return LabelInterface(config)


def _sdk_control(config: str, name: str):
    return _interface(config).get_control(name)


# --- finding quoted entities in the text -------------------------------------------------------------

_QUOTE_VARIANTS = {
    "'": "'’‘`´", "’": "'’‘`´", "‘": "'’‘`´", "`": "'’‘`´",
    '"': '"“”„', "“": '"“”„', "”": '"“”„', "„": '"“”„',
    "-": "-‐‑–—", "–": "-‐‑–—", "—": "-‐‑–—",
}


def find_spans(text: str, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
    """Where a quoted entity is in the text, as (start, end) str indexes (= Label Studio's Text offsets).

    Exact matches first, else matches that ignore case and differences in whitespace (and in the kind of
    apostrophe, quote mark or dash). Whole-word matches are preferred at both stages: "cat" is not found
    inside "category" when it also stands alone. All non-overlapping matches in text order, or only the
    `occurrence`-th (1-based) when given ([] when there are fewer).
    """
    if not isinstance(quote, str) or not quote.strip() or not text or len("".join(quote.split())) > len(text):
        return []
    exact = [(m.start(), m.end()) for m in re.finditer(re.escape(quote), text)]
    tolerant = [(m.start(), m.end()) for m in re.finditer(_tolerant_pattern(quote), text, flags=re.IGNORECASE)
                if m.end() > m.start()]
    spans = []
    for tier in (_whole_words(text, exact), _whole_words(text, tolerant), exact, tolerant):
        if tier:
            spans = tier
            break
    if occurrence is None:
        return spans
    return [spans[occurrence - 1]] if 1 <= occurrence <= len(spans) else []


def _tolerant_pattern(quote: str) -> str:
    words = quote.split()
    parts = []
    for index, word in enumerate(words):
        if index:
            # Words are apart by some whitespace; punctuation may stand with or without it ("Paris , France").
            glued = words[index - 1][-1].isalnum() and word[0].isalnum()
            parts.append(r"\s+" if glued else r"\s*")
        parts.append("".join(f"[{re.escape(_QUOTE_VARIANTS[ch])}]" if ch in _QUOTE_VARIANTS else re.escape(ch)
                             for ch in word))
    return "".join(parts)


def _whole_words(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(start, end) for start, end in spans
            if not (start > 0 and text[start].isalnum() and text[start - 1].isalnum())
            and not (end < len(text) and text[end - 1].isalnum() and text[end].isalnum())]


# --- small helpers ----------------------------------------------------------------------------------

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
    if _is_int(start) and _is_int(end) and 0 <= start < end <= len(text) and text[start:end] == quote:
        return [(start, end)]
    return []


def _resolve_path(tree: tuple, steps: list[str], labels: dict) -> list[str] | None:
    """The stored path a list of node names (matched tolerantly, level by level) names, or None."""
    if not steps:
        return None
    path, nodes = [], tree
    for step in steps:
        if not isinstance(step, str):
            return None
        value = _match(step, _Options(labels[value] for value, _children in nodes))
        if value is None:
            return None
        path.append(value)
        nodes = next(children for v, children in nodes if v == value)
    return path


def _resolve_leaf(tree: tuple, name: str, labels: dict) -> list[str] | None:
    """The one path that ends at a node of this name (case, space and punctuation aside), or None when
    there is none or there are several."""
    from .answers import normalize

    wanted, found = normalize(name), []

    def visit(nodes: tuple, prefix: list[str]) -> None:
        for value, children in nodes:
            if wanted and wanted in (normalize(value), normalize(labels[value].name)):
                found.append(prefix + [value])
            visit(children, prefix + [value])

    visit(tree, [])
    return found[0] if len(found) == 1 else None


def _walk(tree: tuple, path: list) -> tuple | None:
    """The children of the node a stored path ends at (() for a leaf), or None when it is not in the tree."""
    nodes = tree
    for step in path:
        child = next((children for value, children in nodes if value == step), None)
        if child is None:
            return None
        nodes = child
    return nodes if path else None


def _tree_lines(nodes: tuple, labels: dict, depth: int) -> list[str]:
    lines = []
    for value, children in nodes:
        label = labels.get(value)
        described = [part for part in ((label.name if label and label.name != value else ""),
                                       (label.hint if label else "")) if part]
        lines.append("  " * depth + f"- {value}" + (f": {' - '.join(described)}" if described else ""))
        lines.extend(_tree_lines(children, labels, depth + 1))
    return lines


def _number_in(raw: str, maximum: float | None) -> float | str:
    """The number a short string states ("4", " 4.5 ", "4/5", "4 out of 5", "4 stars"); the string if none."""
    text = raw.strip()
    if len(text) > 40:
        return raw
    numbers = re.findall(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    scale = re.fullmatch(r"\s*([-+]?\d+(?:\.\d+)?)\s*(?:/|out of|of)\s*(\d+(?:\.\d+)?)\s*(?:stars?)?\s*", text)
    if scale and (maximum is None or float(scale.group(2)) == float(maximum)):
        return float(scale.group(1))
    if len(numbers) == 1 and re.fullmatch(r"[^\d]{0,3}" + re.escape(numbers[0]) + r"\s*[a-zA-Z%]{0,8}\.?", text):
        return float(numbers[0])
    return raw


def _unwrap(value: Any, keys: tuple[str, ...], alone: bool = False) -> Any:
    """The inner value of {"label": ...}-like wrappers a model puts around a field's value (with other keys
    beside it, such as a "reason", unless `alone`: an entity object is not a wrapper)."""
    if isinstance(value, dict) and (len(value) == 1 or not alone):
        key = next((key for key in keys if key in value), None)
        if key is not None:
            return value[key]
    return value


def _unique(items: Iterable) -> list:
    seen, unique = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            unique.append(item)
    return unique


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def _positive_int(raw: Any, where: str, name: str) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a whole number") from None
    if number < 1:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be at least 1")
    return number


def _float(raw: Any, where: str, name: str) -> float | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a number") from None
    if not math.isfinite(number):
        raise UnsupportedConfig(f"{where} has {name}={raw!r}; it must be a finite number")
    return number


def _plain(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _fmt(number: Any) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)
