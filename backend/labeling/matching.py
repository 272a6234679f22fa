"""The allowed answers of a control (Label) and matching a model's free text onto exactly one of them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MIN_PREFIX = 3


@dataclass(frozen=True)
class Label:
    """One allowed answer: `value` is what Label Studio stores, `name` what humans read."""

    value: str
    name: str
    hint: str = ""


class LabelSet(Protocol):
    """Anything with a label set: a LabelingSpec, a Control, or LabelOptions."""

    @property
    def labels(self) -> tuple[Label, ...]: ...

    @property
    def label_values(self) -> tuple[str, ...]: ...


class LabelOptions:
    """A label set made on the spot (one level of a taxonomy, say), in the shape match_label reads."""

    def __init__(self, labels: Iterable[Label]) -> None:
        self.labels = tuple(labels)
        self.label_values = tuple(label.value for label in self.labels)


def normalize(text: str) -> str:
    """Case-, space- and punctuation-insensitive form used to compare an answer with labels."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", "", text)


def match_label(raw: str, spec: LabelSet) -> str | None:
    """The one label a free-text answer names, or None: exact, normalized, unique prefix, unique mention."""
    raw = raw.strip()
    if raw in spec.label_values:
        return raw
    wanted = normalize(raw)
    if not wanted:
        return None
    by_norm: dict[str, str] = {}
    for label in spec.labels:
        for form in (label.value, label.name):
            by_norm.setdefault(normalize(form), label.value)
    if wanted in by_norm:
        return by_norm[wanted]
    # A prefix must be long enough to mean something: "p" is not an answer, "pos" is.
    prefixed = {
        value for norm, value in by_norm.items() if norm and norm.startswith(wanted) and len(wanted) >= MIN_PREFIX
    }
    if len(prefixed) == 1:
        return prefixed.pop()
    return _unique_mention(raw, spec)


def _unique_mention(raw: str, spec: LabelSet) -> str | None:
    # A sentence around the label ("The label is Positive.") names exactly one label as a whole word; a label
    # inside a longer one's mention ("Sci" in "sci/tech") is not a mention of its own.
    spans = []
    for label in spec.labels:
        for form in {label.value, label.name}:
            for match in re.finditer(rf"(?<!\w){re.escape(form)}(?!\w)", raw, flags=re.IGNORECASE):
                spans.append((match.start(), match.end(), label.value))
    found = {
        value
        for start, end, value in spans
        if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans)
    }
    return found.pop() if len(found) == 1 else None
