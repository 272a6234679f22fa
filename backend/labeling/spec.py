"""LabelingSpec: what a Label Studio labeling config asks for, as far as the labeler can serve it."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

from .errors import MissingText, UnsupportedConfig

SUPPORTED_OBJECTS = ("Text", "HyperText", "Paragraphs")
SUPPORTED_CONTROLS = ("Choices", "Labels", "TextArea", "Taxonomy", "Rating", "Number")
SUPPORTED_HELP = (
    "supported: Choices (single or multiple), Labels (spans, on Text), TextArea, Taxonomy, Rating and Number "
    "controls, all on one Text, HyperText or Paragraphs object"
)


@dataclass(frozen=True)
class Label:
    """One allowed answer: `value` is what Label Studio stores, `name` what humans read."""

    value: str
    name: str
    hint: str = ""


@dataclass(frozen=True)
class LabelingSpec:
    """The parts of a labeling config that shape prompts, answers and results."""

    config: str
    control_name: str
    control_tag: str
    object_name: str
    object_tag: str
    data_key: str
    multiple: bool
    labels: tuple[Label, ...]
    paragraph_name_key: str = "author"
    paragraph_text_key: str = "text"
    # Anything but a single Choices control: the model answers one JSON field per control.
    structured: bool = False
    controls: tuple = ()

    @property
    def label_values(self) -> tuple[str, ...]:
        return tuple(label.value for label in self.labels)

    def text_of(self, data: Any) -> str:
        """The text the model reads for a task's `data`; MissingText when there is none."""
        if not isinstance(data, dict):
            raise MissingText(f"task data must be an object, got {type(data).__name__}")
        if self.data_key not in data:
            raise MissingText(
                f"task data has no key {self.data_key!r} (the config's {self.object_tag} "
                f"reads ${self.data_key}); keys present: {sorted(data)[:10]}"
            )
        value = data[self.data_key]
        if self.object_tag == "Paragraphs":
            return _paragraphs_text(value, self.paragraph_name_key, self.paragraph_text_key)
        if not isinstance(value, str):
            raise MissingText(f"task data {self.data_key!r} must be a string, got {type(value).__name__}")
        text = _strip_html(value) if self.object_tag == "HyperText" else value
        if not text.strip():
            raise MissingText(f"task data {self.data_key!r} is empty")
        return text


def parse_spec(config: str) -> LabelingSpec:
    """Parse a labeling config; UnsupportedConfig names the tag the labeler cannot serve."""
    return _parse_spec_cached(config)


@lru_cache(maxsize=256)
def _parse_spec_cached(config: str) -> LabelingSpec:
    interface = _interface(config)
    controls = list(interface.controls)
    if not controls:
        raise UnsupportedConfig(f"the labeling config has no control tag; {SUPPORTED_HELP}")
    unsupported = [c for c in controls if c.tag not in SUPPORTED_CONTROLS]
    if unsupported:
        tag = unsupported[0]
        raise UnsupportedConfig(f"control <{tag.tag} name={tag.name!r}> is not supported; {SUPPORTED_HELP}")
    if len(controls) > 1 or controls[0].tag != "Choices":
        return _structured_spec(config, interface, controls)
    control = controls[0]
    from .controls import refuse_per_region  # controls builds on this module's Label

    refuse_per_region(control, f"control <{control.tag} name={control.name!r}>")  # as a structured config would
    obj = _target_object(interface, control)
    return LabelingSpec(
        config=config,
        control_name=control.name,
        control_tag=control.tag,
        object_name=obj.name,
        object_tag=obj.tag,
        data_key=_data_key(obj),
        multiple=control.attr.get("choice", "single") == "multiple",
        labels=_labels(control),
        paragraph_name_key=obj.attr.get("nameKey", "author"),
        paragraph_text_key=obj.attr.get("textKey", "text"),
    )


def _structured_spec(config: str, interface: LabelInterface, controls: list) -> LabelingSpec:
    """Several controls, or one that is not Choices: each gets a field of one JSON answer."""
    from .controls import parse_controls  # controls builds on this module's Label

    objects = []
    for control in controls:
        obj = _target_object(interface, control)
        if obj.name not in [o.name for o in objects]:
            objects.append(obj)
    if len(objects) != 1:
        names = ", ".join(repr(o.name) for o in objects)
        raise UnsupportedConfig(f"every control must label the same object, got {names} "
                                f"({config_inventory(interface)}); {SUPPORTED_HELP}")
    obj = objects[0]
    parsed = parse_controls(interface)
    return LabelingSpec(
        config=config, control_name=parsed[0].name, control_tag=parsed[0].tag, object_name=obj.name,
        object_tag=obj.tag, data_key=_data_key(obj), multiple=False, labels=(),
        paragraph_name_key=obj.attr.get("nameKey", "author"), paragraph_text_key=obj.attr.get("textKey", "text"),
        structured=True, controls=tuple(parsed))


@lru_cache(maxsize=256)
def _interface(config: str) -> LabelInterface:
    if not isinstance(config, str) or not config.strip():
        raise UnsupportedConfig("the labeling config is empty")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises assorted XML and key errors
        raise UnsupportedConfig(f"the labeling config does not parse: {exc}") from exc


def interface_of(spec: LabelingSpec) -> LabelInterface:
    """The SDK's LabelInterface for a spec (cached), used to build and validate regions."""
    return _interface(spec.config)


def config_inventory(interface: LabelInterface) -> str:
    """What a config has, for messages about it: its objects and controls by tag and name."""
    def tags(items) -> str:
        return ", ".join(f"<{item.tag} name={item.name!r}>" for item in items or []) or "none"

    return f"the config has objects {tags(interface.objects)} and controls {tags(interface.controls)}"


def _target_object(interface: LabelInterface, control):
    objects = list(control.objects or [])
    if len(objects) != 1:
        raise UnsupportedConfig(
            f"control <{control.tag} name={control.name!r}> must point (toName) at exactly one "
            f"object, got {control.to_name!r} ({config_inventory(interface)}); {SUPPORTED_HELP}"
        )
    obj = objects[0]
    if obj.tag not in SUPPORTED_OBJECTS:
        raise UnsupportedConfig(f"object <{obj.tag} name={obj.name!r}> is not supported; {SUPPORTED_HELP}")
    if obj.attr.get("valueType") == "url":
        raise UnsupportedConfig(
            f"object <{obj.tag} name={obj.name!r}> has valueType=\"url\": the backend does not fetch "
            "task URLs; store the text itself in the task data"
        )
    return obj


def _data_key(obj) -> str:
    value = str(obj.value or "")
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfig(
            f"object <{obj.tag} name={obj.name!r}> must read its text from task data "
            f"(value=\"$key\"), got value={value!r}"
        )
    return value[1:]


def _labels(control) -> tuple[Label, ...]:
    labels = []
    for value, tag in control.labels_attrs.items():
        attr = tag.attr or {}
        labels.append(Label(value=value, name=attr.get("value", value), hint=attr.get("hint", "")))
    if not labels:
        raise UnsupportedConfig(f"control <{control.tag} name={control.name!r}> has no choices")
    return tuple(labels)


def _paragraphs_text(value: Any, name_key: str, text_key: str) -> str:
    if not isinstance(value, list):
        raise MissingText(f"Paragraphs data must be a list of objects, got {type(value).__name__}")
    lines = []
    for item in value:
        if not isinstance(item, dict):
            raise MissingText(f"Paragraphs items must be objects, got {type(item).__name__}")
        speaker, text = item.get(name_key), item.get(text_key, "")
        lines.append(f"{speaker}: {text}" if speaker else str(text))
    text = "\n".join(lines)
    if not text.strip():
        raise MissingText("Paragraphs data holds no text")
    return text


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _strip_html(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return re.sub(r"[ \t]+", " ", html.unescape("".join(parser.parts))).strip()
