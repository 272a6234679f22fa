"""LabelingSpec: what a Label Studio labeling config asks for, as far as the labeler can serve it, and the text a
task gives the model. labeling/parser.py makes one from a config (parse_spec)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from backend.labeling.errors import MissingText
from backend.labeling.interface import load_interface

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.interface import LabelInterface

    from backend.labeling.controls.base import Control
    from backend.labeling.matching import Label


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
    controls: tuple[Control, ...] = ()

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


def interface_of(spec: LabelingSpec) -> LabelInterface:
    """The SDK's LabelInterface for a spec (cached), used to build and validate regions."""
    return load_interface(spec.config)


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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _strip_html(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return re.sub(r"[ \t]+", " ", html.unescape("".join(parser.parts))).strip()
