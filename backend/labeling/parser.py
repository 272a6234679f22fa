"""The one labeling-config parser: a Label Studio config to its LabelingSpec and the Controls the labeler answers,
or an error.

The supported control kinds are the classes in labeling/controls/; the supported list and its help text are
made from them here, once. UnsupportedConfig names the tag the labeler cannot serve and what is supported.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from backend.labeling.controls.choices import ChoicesControl
from backend.labeling.controls.labels import LabelsControl
from backend.labeling.controls.numeric import NumberControl, RatingControl
from backend.labeling.controls.taxonomy import TaxonomyControl
from backend.labeling.controls.textarea import TextAreaControl
from backend.labeling.errors import UnsupportedConfig
from backend.labeling.interface import load_interface
from backend.labeling.spec import LabelingSpec

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag

    from backend.labeling.controls.base import Control

# In the order the supported list names them.
KINDS: tuple[type[Control], ...] = (
    ChoicesControl,
    LabelsControl,
    TextAreaControl,
    TaxonomyControl,
    RatingControl,
    NumberControl,
)
SUPPORTED_OBJECTS = ("Text", "HyperText", "Paragraphs")
CONTROL_KINDS: dict[str, type[Control]] = {kind.TAG: kind for kind in KINDS}
SUPPORTED_CONTROLS = tuple(CONTROL_KINDS)


def _listed(names: tuple[str, ...], last: str) -> str:
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


SUPPORTED_HELP = (
    f"supported: {_listed(SUPPORTED_CONTROLS, 'and')} controls, all on one {_listed(SUPPORTED_OBJECTS, 'or')} object"
    + "".join(f" ({kind.TAG} on {_listed(kind.OBJECTS, 'or')} only)" for kind in KINDS if kind.OBJECTS)
)


def parse_spec(config: str) -> LabelingSpec:
    """Parse a labeling config; UnsupportedConfig names the tag the labeler cannot serve."""
    return _parse_spec_cached(config)


@lru_cache(maxsize=256)
def _parse_spec_cached(config: str) -> LabelingSpec:
    controls, obj = parse_config(load_interface(config))
    first, attr = controls[0], obj.attr or {}
    common = {
        "config": config,
        "control_name": first.name,
        "control_tag": first.tag,
        "object_name": obj.name,
        "object_tag": obj.tag,
        "data_key": _data_key(obj),
        "paragraph_name_key": attr.get("nameKey", "author"),
        "paragraph_text_key": attr.get("textKey", "text"),
    }
    if len(controls) == 1 and isinstance(first, ChoicesControl):
        return LabelingSpec(**common, multiple=first.multiple, labels=first.labels)
    # Several controls, or one that is not Choices: each gets a field of one JSON answer.
    return LabelingSpec(**common, multiple=False, labels=(), structured=True, controls=controls)


def parse_controls(interface: LabelInterface) -> tuple[Control, ...]:
    """Every control of a config (a LabelInterface), in config order; UnsupportedConfig names what is not."""
    return parse_config(interface)[0]


def parse_config(interface: LabelInterface) -> tuple[tuple[Control, ...], ObjectTag]:
    """The config's controls, in config order, and the one object they all label."""
    tags = list(interface.controls or [])
    if not tags:
        raise UnsupportedConfig(f"the labeling config has no control tag; {SUPPORTED_HELP}")
    parsed: list[Control] = []
    objects: dict[str, ObjectTag] = {}
    for tag in tags:
        where = f"control <{tag.tag} name={tag.name!r}>"
        kind = CONTROL_KINDS.get(tag.tag)
        if kind is None:
            raise UnsupportedConfig(f"{where} is not supported; {SUPPORTED_HELP}")
        refuse_per_region(tag, where)
        obj = _object_of(interface, tag, where)
        objects[obj.name or ""] = obj
        parsed.append(kind.from_tag(interface, tag, obj, where))
    if len(objects) > 1:
        raise UnsupportedConfig(
            f"every control must label the same object; the controls label {len(objects)} objects "
            f"({', '.join(map(repr, sorted(objects)))}) "
            f"({config_inventory(interface)}); {SUPPORTED_HELP}"
        )
    return tuple(parsed), next(iter(objects.values()))


def refuse_per_region(tag: ControlTag, where: str) -> None:
    """UnsupportedConfig for perRegion/perItem controls: they answer per region or item, not per task."""
    for attr in ("perRegion", "perItem"):
        if str((tag.attr or {}).get(attr, "")).lower() == "true":
            raise UnsupportedConfig(
                f'{where} has {attr}="true": per-region and per-item answers are not supported; {SUPPORTED_HELP}'
            )


def config_inventory(interface: LabelInterface) -> str:
    """What a config has, for messages about it: its objects and controls by tag and name."""

    def tags(items: Iterable[ObjectTag] | Iterable[ControlTag] | None) -> str:
        return ", ".join(f"<{item.tag} name={item.name!r}>" for item in items or []) or "none"

    return f"the config has objects {tags(interface.objects)} and controls {tags(interface.controls)}"


def _object_of(interface: LabelInterface, tag: ControlTag, where: str) -> ObjectTag:
    """The one object a control labels; UnsupportedConfig unless it is a supported object holding task text."""
    objects = list(tag.objects or [])
    if len(objects) != 1:
        raise UnsupportedConfig(
            f"{where} must point (toName) at exactly one object, got {tag.to_name!r} "
            f"({config_inventory(interface)}); {SUPPORTED_HELP}"
        )
    obj: ObjectTag = objects[0]
    if obj.tag not in SUPPORTED_OBJECTS:
        raise UnsupportedConfig(
            f"{where} labels object <{obj.tag} name={obj.name!r}>, which is not supported; {SUPPORTED_HELP}"
        )
    if (obj.attr or {}).get("valueType") == "url":
        raise UnsupportedConfig(
            f'object <{obj.tag} name={obj.name!r}> has valueType="url": the backend does not fetch '
            "task URLs; store the text itself in the task data"
        )
    return obj


def _data_key(obj: ObjectTag) -> str:
    value = str(obj.value or "")
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfig(
            f"object <{obj.tag} name={obj.name!r}> must read its text from task data "
            f'(value="$key"), got value={value!r}'
        )
    return value[1:]
