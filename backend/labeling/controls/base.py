"""Control: one control tag of the labeling config, and the steps every kind of control shares.

Each supported kind (Choices, Labels, TextArea, Taxonomy, Rating, Number) is a subclass in its own module that
keeps all its logic together: how it is read from the config (`from_tag`), described to the model (`describe`),
the JSON schema of its answer (`schema`), the answer a demonstration shows (`to_answer`), its value in an
annotation (`from_result`), a model's value checked against the config (`check`) and the Label Studio result
items it becomes (`regions`, built through the SDK's LabelInterface). The parser (labeling/parser.py) picks the
class by tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from backend.labeling.controls.values import is_true
from backend.labeling.errors import BadExamples, LabelingError, UnsupportedConfig
from backend.labeling.interface import load_interface
from backend.labeling.matching import Label

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag
    from label_studio_sdk.label_interface.region import Region

Notes = dict[str, int]  # what check() dropped or cut, by reason
Made = list[tuple["Region", dict[str, Any]]]  # SDK regions, each with extra value keys to store


@dataclass(frozen=True)
class Control:
    """One control tag of the config and everything the labeler needs to answer it."""

    TAG: ClassVar[str] = ""  # the config tag a subclass serves
    OBJECTS: ClassVar[tuple[str, ...] | None] = None  # the object tags it may label, when not all supported ones

    name: str  # the control's name: from_name in results and the answer's field name
    tag: str  # "Choices" | "Labels" | "TextArea" | "Taxonomy" | "Rating" | "Number"
    to_name: str  # the object it labels
    labels: tuple[Label, ...] = ()  # Choices' choices, Labels' labels, Taxonomy's nodes (value = stored value)
    multiple: bool = False  # Choices choice="multiple"; Taxonomy unless maxUsages="1"
    minimum: float | None = None  # Number min; Rating 1
    maximum: float | None = None  # Number max; Rating maxRating (default 5)
    max_submissions: int | None = None  # TextArea maxSubmissions; Taxonomy maxUsages (paths at most)
    placeholder: str = ""  # TextArea placeholder, an instruction for that field
    tree: tuple[Any, ...] = ()  # Taxonomy: ((value, children), ...) with children in the same form
    step: float | None = None  # Number step, when the config sets one
    leafs_only: bool = False  # Taxonomy leafsOnly: every path ends at a leaf
    required: bool = False  # required="true": an empty answer is not an answer
    object_tag: str = "Text"  # Text | HyperText | Paragraphs
    config: str = field(default="", repr=False, compare=False)  # the labeling config, for the SDK

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        """This kind's Control for a control tag of the config; UnsupportedConfig names what it cannot serve."""
        raise LabelingError(f"{where} has no parser")

    @classmethod
    def common(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag) -> dict[str, Any]:
        """The constructor arguments every kind reads the same way."""
        return {
            "name": tag.name,
            "tag": cls.TAG,
            "to_name": obj.name,
            "object_tag": obj.tag,
            "required": is_true((tag.attr or {}).get("required")),
            "config": interface.config,
        }

    @property
    def label_values(self) -> tuple[str, ...]:
        return tuple(label.value for label in self.labels)

    # -- prompt ------------------------------------------------------------------------------------

    def describe(self) -> str:
        """A few lines for the system instruction: what to answer in this control's field."""
        raise LabelingError(f"no description for control tag {self.tag!r}")

    def schema(self) -> dict[str, Any]:
        """The JSON schema of this field's answer (strict-mode friendly: every object property required)."""
        raise LabelingError(f"no schema for control tag {self.tag!r}")

    def to_answer(self, value: Any) -> Any:
        """A value (from from_result or check) in the exact form of schema(): what a demonstration shows."""
        return value

    def label_lines(self) -> list[str]:
        """One line per label that has a display name or a hint beside its stored value."""
        lines = []
        for label in self.labels:
            described = [part for part in (label.name if label.name != label.value else "", label.hint) if part]
            if described:
                lines.append(f"- {label.value}: {' - '.join(described)}")
        return lines

    # -- annotations ---------------------------------------------------------------------------------

    def from_result(self, result: list[dict[str, Any]], text: str) -> Any | None:
        """This control's value in an annotation's `result`, in the form check() returns; None if it has none.

        BadExamples when the annotation holds something this config cannot express (a label it no longer
        has, offsets outside the text): such an annotation makes a wrong demonstration.
        """
        values = [
            item["value"]
            for item in result or []
            if isinstance(item, dict)
            and item.get("from_name") == self.name
            and item.get("to_name", self.to_name) == self.to_name
            and isinstance(item.get("value"), dict)
        ]
        if not values:
            return None
        return self.read(values, text, f"annotation of {self.tag} {self.name!r}")

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> Any | None:
        """This control's value from the `value` objects of its result items (at least one)."""
        raise LabelingError(f"cannot read control tag {self.tag!r}")

    def known(self, labels: list[Any], where: str) -> None:
        """BadExamples when an annotation names a label the config does not have."""
        unknown = [label for label in labels if label not in self.label_values]
        if unknown:
            raise BadExamples(f"{where}: label {unknown[0]!r} is not in the config's {list(self.label_values)}")

    # -- model answers --------------------------------------------------------------------------------

    def check(self, value: Any, text: str) -> tuple[Any, Notes]:
        """(cleaned value, notes): the value in from_result's form, and counts of what was dropped (empty if
        nothing was). InvalidAnswer ("malformed", "out_of_set", "empty") when nothing usable remains."""
        raise LabelingError(f"cannot check control tag {self.tag!r}")

    # -- results ------------------------------------------------------------------------------------

    def row_value(self, value: Any, text: str) -> Any:
        """A checked value in the row form of `label` output and seed files (Label Studio's shape for spans)."""
        return value

    def regions(self, value: Any, text: str) -> list[dict[str, Any]]:
        """Label Studio result items (no "id") for a value; the value is checked again first, so nothing
        outside the config is ever emitted."""
        if not self.config:
            raise LabelingError(f"control {self.name!r} was not made by parse_controls (no config to build from)")
        value, _notes = self.check(value, text)
        control = load_interface(self.config).get_control(self.name)
        try:
            made = self.make_regions(control, value, text)
        except ValueError as exc:  # the SDK refuses labels its config does not define
            raise LabelingError(f"{self.name!r}: {value!r} does not fit the config: {exc}") from exc
        items = []
        for region, extra in made:
            item: dict[str, Any] = region._dict()  # the SDK's own serializer for one region
            item.pop("id", None)  # Label Studio assigns ids; a stable result also hashes stably
            item["value"].update(extra)
            items.append(item)
        return items

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        """The SDK regions for a checked value."""
        raise LabelingError(f"cannot build regions for control tag {self.tag!r}")


def config_labels(tag: ControlTag, where: str, what: str) -> tuple[Label, ...]:
    """The <Choice>/<Label> children of a Choices or Labels tag; UnsupportedConfig when there are none."""
    labels = []
    for value, child in (tag.labels_attrs or {}).items():
        attr = child.attr or {}
        labels.append(Label(value=value, name=attr.get("value", value), hint=attr.get("hint", "")))
    if not labels:
        dynamic = ' (labels from task data, value="$...", are not supported)' if (tag.attr or {}).get("value") else ""
        raise UnsupportedConfig(f"{where} has no {what}{dynamic}")
    return tuple(labels)
