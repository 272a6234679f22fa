"""Label Studio results: labels turned into regions through the SDK's LabelInterface, and validated."""

from __future__ import annotations

from typing import Any

from backend.labeling.errors import LabelingError
from backend.labeling.spec import LabelingSpec, interface_of


def result_regions(spec: LabelingSpec, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The `result` list of a prediction; the SDK refuses labels the config does not define."""
    control = interface_of(spec).get_control(spec.control_name)
    try:
        region = control.label(list(labels) if spec.multiple else labels[0], to_name=spec.object_name)
    except ValueError as exc:
        raise LabelingError(f"labels {list(labels)!r} are not all in the config: {exc}") from exc
    item = region._dict()  # the SDK's own serializer for one region
    item.pop("id", None)  # Label Studio assigns ids; a stable result also hashes stably
    return [item]


def structured_regions(spec: LabelingSpec, answer: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Result regions of every control that has a value in a structured answer, in config order."""
    regions = []
    for control in spec.controls:
        if control.name in answer:
            regions.extend(control.regions(answer[control.name], text))
    return regions


def answer_regions(
    spec: LabelingSpec, labels: tuple[str, ...] | None, values: dict[str, Any] | None, text: str
) -> list[dict[str, Any]]:
    """The `result` of a prediction for a labeled text: its choices, or every control's regions."""
    if spec.structured:
        return structured_regions(spec, values or {}, text)
    return result_regions(spec, tuple(labels or ()))


def prediction_errors(spec: LabelingSpec, result: list[dict[str, Any]]) -> list[str]:
    """What LabelInterface.validate_prediction finds wrong with a result (empty when it is valid)."""
    return interface_of(spec).validate_prediction({"result": result}, return_errors=True) or []
