"""Rating and Number: one number for the whole object, in the tag's range (and on its step)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from backend.labeling.controls.base import Control, Made, Notes
from backend.labeling.controls.values import finite_float, fmt, plain, positive_int, unwrap
from backend.labeling.errors import BadExamples, InvalidAnswer, LabelingError, UnsupportedConfig

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag

DEFAULT_MAX_RATING = 5


class OutOfRange(LabelingError):
    """A number outside the control's range or step."""


class NumericControl(Control):
    """What Rating and Number share: the value is one number, read tolerantly ("4", "4/5", "4 stars")."""

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> int | float | None:
        key = self.tag.lower()
        raw = next((v[key] for v in values if v.get(key) is not None), None)
        if raw is None or self.empty(raw):
            return None
        try:
            return self.number(raw)
        except LabelingError as exc:
            raise BadExamples(f"{where}: {exc}") from exc

    def empty(self, raw: Any) -> bool:
        """Whether a stored value means "no value"."""
        return False

    def check(self, value: Any, text: str) -> tuple[int | float, Notes]:
        value = unwrap(value, (self.tag.lower(), "value", self.name))
        if value is None or value == "":
            raise InvalidAnswer("empty", f"no {self.tag.lower()} for {self.name!r}")
        try:
            return self.number(value), {}
        except OutOfRange as exc:
            raise InvalidAnswer("out_of_set", str(exc)) from exc
        except LabelingError as exc:
            raise InvalidAnswer("malformed", str(exc)) from exc

    def number(self, raw: Any) -> int | float:
        """A number from a value (strings like "4", "4/5", "4 stars" tolerated), in range, else an error."""
        if isinstance(raw, bool):
            raise LabelingError(f"{raw!r} is not a number")
        if isinstance(raw, str):
            raw = _number_in(raw, self.scale())
        try:
            finite = isinstance(raw, (int, float)) and math.isfinite(raw)
        except OverflowError:  # an integer past float's range
            finite = False
        if not finite:
            raise LabelingError(f"{str(raw)[:40]!r} is not a finite number")
        number = int(raw) if float(raw).is_integer() and abs(raw) < 2**53 else float(raw)
        self.in_range(number, raw)
        return number

    def scale(self) -> float | None:
        """The top of the scale an answer like "4/5" must name to be read as a number."""
        return None

    def in_range(self, number: int | float, raw: Any) -> None:
        """OutOfRange when the number is outside what the control allows."""


class RatingControl(NumericControl):
    """A Rating tag: an integer from 1 to maxRating (default 5); a stored 0 is no rating."""

    TAG = "Rating"

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        top = positive_int((tag.attr or {}).get("maxRating"), where, "maxRating") or DEFAULT_MAX_RATING
        return cls(**cls.common(interface, tag, obj), minimum=1, maximum=top)

    def top(self) -> int:
        return int(self.maximum or DEFAULT_MAX_RATING)

    def describe(self) -> str:
        return f"Field {self.name!r}: an integer rating from 1 to {self.top()}"

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": self.top()}

    def empty(self, raw: Any) -> bool:
        return bool(raw == 0)  # a rating of 0 is no rating

    def scale(self) -> float | None:
        return self.maximum

    def in_range(self, number: int | float, raw: Any) -> None:
        if not isinstance(number, int) or not 1 <= number <= self.top():
            raise OutOfRange(f"rating {fmt(raw)} is not an integer from 1 to {self.top()}")

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        return [(control.label(to_name=self.to_name, rating=value), {})]


class NumberControl(NumericControl):
    """A Number tag: a number within min..max, on the step when the config sets one."""

    TAG = "Number"

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        attr = tag.attr or {}
        low, high = finite_float(attr.get("min"), where, "min"), finite_float(attr.get("max"), where, "max")
        step = finite_float(attr.get("step"), where, "step")
        if low is not None and high is not None and low > high:
            raise UnsupportedConfig(f"{where} has min {fmt(low)} above max {fmt(high)}")
        if step is not None and step <= 0:
            raise UnsupportedConfig(f"{where} has step={attr.get('step')!r}; a step must be positive")
        return cls(**cls.common(interface, tag, obj), minimum=low, maximum=high, step=step)

    def describe(self) -> str:
        kind = "an integer" if self._integer_only() else "a number"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"at least {fmt(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"at most {fmt(self.maximum)}")
        if self.step is not None and not self._integer_only():
            bounds.append(f"in steps of {fmt(self.step)}")
        return f"Field {self.name!r}: " + kind + (" " + ", ".join(bounds) if bounds else "")

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self._integer_only() else "number"}
        if self.minimum is not None:
            schema["minimum"] = plain(self.minimum)
        if self.maximum is not None:
            schema["maximum"] = plain(self.maximum)
        return schema

    def in_range(self, number: int | float, raw: Any) -> None:
        if self.minimum is not None and number < self.minimum:
            raise OutOfRange(f"{fmt(number)} is below the minimum {fmt(self.minimum)} of {self.name!r}")
        if self.maximum is not None and number > self.maximum:
            raise OutOfRange(f"{fmt(number)} is above the maximum {fmt(self.maximum)} of {self.name!r}")
        if self.step:
            steps = (number - (self.minimum or 0)) / self.step
            if abs(steps - round(steps)) > 1e-9:
                raise OutOfRange(f"{fmt(number)} is not on the step {fmt(self.step)} of {self.name!r}")

    def _integer_only(self) -> bool:
        # An explicit integer step from an integer (or no) minimum only reaches integers.
        return (
            self.step is not None
            and float(self.step).is_integer()
            and (self.minimum is None or float(self.minimum).is_integer())
        )

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        return [(control.label(to_name=self.to_name, number=value), {})]


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
