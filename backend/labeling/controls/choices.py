"""Choices: one label (or, with choice="multiple", every label that applies) for the whole object."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from backend.labeling.controls.base import Control, Made, Notes, config_labels
from backend.labeling.controls.values import as_list, unwrap
from backend.labeling.errors import BadExamples, InvalidAnswer
from backend.labeling.matching import match_label

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag


class ChoicesControl(Control):
    """A Choices tag: the value is the list of chosen labels, in config order."""

    TAG = "Choices"

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        return cls(
            **cls.common(interface, tag, obj),
            labels=config_labels(tag, where, "choices"),
            multiple=(tag.attr or {}).get("choice") == "multiple",
        )

    def describe(self) -> str:
        what = "every label that applies (a list)" if self.multiple else "exactly one label"
        return "\n".join(
            [f"Field {self.name!r}: " + what + " from: " + "; ".join(self.label_values), *self.label_lines()]
        )

    def schema(self) -> dict[str, Any]:
        enum = {"type": "string", "enum": list(self.label_values)}
        return {"type": "array", "items": enum, "minItems": 1} if self.multiple else enum

    def to_answer(self, value: Any) -> Any:
        return value if self.multiple else value[0]

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> list[str] | None:
        chosen = [c for v in values for c in as_list(v.get("choices"))]
        if not chosen:
            return None
        self.known(chosen, where)
        if len(set(chosen)) > 1 and not self.multiple:
            raise BadExamples(f"{where}: {len(set(chosen))} choices {chosen!r} for a single-choice control")
        return [v for v in self.label_values if v in chosen]

    def check(self, value: Any, text: str) -> tuple[list[str], Notes]:
        value = unwrap(value, ("labels", "label", "choices", "choice", self.name))
        if isinstance(value, str) and not value.strip():
            value = None
        if isinstance(value, str):
            whole = match_label(value, self)
            if whole is not None:
                value = [whole]
            elif self.multiple:
                value = [part for part in re.split(r"[;,\n]|\s\|\s", value) if part.strip()]
            else:
                value = [value]
        if value is None or value == []:
            raise InvalidAnswer("empty", f"no label for {self.name!r}")
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise InvalidAnswer(
                "malformed", f"{self.name!r} must be a label or a list of labels, got {str(value)[:80]}"
            )
        labels = []
        for raw in value:
            label = match_label(str(raw), self)
            if label is None:
                raise InvalidAnswer("out_of_set", f"{str(raw)[:80]!r} is not one of {list(self.label_values)}")
            labels.append(label)
        if len(set(labels)) > 1 and not self.multiple:
            raise InvalidAnswer("malformed", f"{len(set(labels))} labels for the single-choice control {self.name!r}")
        return [v for v in self.label_values if v in labels], {}

    def row_value(self, value: Any, text: str) -> Any:
        """One choice as a string, several as a list (a row's "label" as the seed files write it)."""
        return list(value) if self.multiple else value[0]

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        return [(control.label(value if self.multiple else value[0], to_name=self.to_name), {})]
