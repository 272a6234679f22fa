"""TextArea: free-text answers (at most maxSubmissions of them), guided by the tag's placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.labeling.controls.base import Control, Made, Notes
from backend.labeling.controls.values import as_list, fmt, positive_int, unwrap
from backend.labeling.errors import InvalidAnswer

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag


class TextAreaControl(Control):
    """A TextArea tag: the value is a list of non-empty, stripped texts."""

    TAG = "TextArea"

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        attr = tag.attr or {}
        return cls(
            **cls.common(interface, tag, obj),
            placeholder=attr.get("placeholder", "").strip(),
            max_submissions=positive_int(attr.get("maxSubmissions"), where, "maxSubmissions"),
        )

    def describe(self) -> str:
        count = f"at most {self.max_submissions} " if self.max_submissions else ""
        lines = [f"Field {self.name!r}: a list of {count}free-text answers"]
        if self.placeholder:
            lines.append(f"Instruction for {self.name!r}: {self.placeholder}")
        return "\n".join(lines)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        if self.max_submissions:
            schema["maxItems"] = self.max_submissions
        if self.required:
            schema["minItems"] = 1
        return schema

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> list[str] | None:
        texts = [t.strip() for v in values for t in as_list(v.get("text")) if isinstance(t, str) and t.strip()]
        return texts or None

    def check(self, value: Any, text: str) -> tuple[list[str], Notes]:
        value = unwrap(value, ("text", "texts", "answer", self.name))
        if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [] if value is None else [value]
        if not isinstance(value, list):
            raise InvalidAnswer("malformed", f"{self.name!r} must be a list of strings, got {type(value).__name__}")
        texts, dropped = [], 0
        for item in value:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = fmt(item)
            if not isinstance(item, str) or not item.strip():
                dropped += 1
                continue
            texts.append(item.strip())
        notes = {"dropped_empty": dropped} if dropped else {}
        if self.max_submissions and len(texts) > self.max_submissions:
            notes["cut"] = len(texts) - self.max_submissions
            texts = texts[: self.max_submissions]
        if not texts and (value or self.required):
            raise InvalidAnswer("empty", f"no text for {self.name!r}")
        return texts, notes

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        return [(control.label(value, to_name=self.to_name), {})] if value else []
