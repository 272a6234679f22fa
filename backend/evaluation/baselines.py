"""No-LLM baselines for structured configs, to say what the model adds (pure).

For each control: the nearest training example's value (TF-IDF, as for single Choices configs), except
spans, where a nearest sentence's entities rarely occur in a new one: there the baseline is a gazetteer,
every entity text seen in training marked wherever it stands as whole words, with the label it had most
often (longest names first, no overlaps).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.labeling.examples import Example


class StructuredBaseline:
    """The baseline of one cross-validation fold: its gazetteers are built once from the fold's training examples."""

    def __init__(self, controls, train: list[Example]) -> None:
        self.controls = controls
        self.names = {c.name: gazetteer(train, c.name) for c in controls if c.tag == "Labels"}

    def answer(self, nearest: Example | None, text: str) -> dict:
        """The baseline's answer for a text, in annotation form ({control name: value})."""
        answer = {}
        near = nearest.answer if nearest is not None else {}
        for control in self.controls:
            if control.tag == "Labels":
                answer[control.name] = gazetteer_spans(self.names[control.name], text)
            elif control.name in near:
                answer[control.name] = near[control.name]
        return answer


def gazetteer(examples: list[Example], control_name: str) -> dict[str, str]:
    """{entity text: its most frequent label} over the examples' spans of one control."""
    seen: dict[str, Counter] = {}
    for example in examples:
        for entity in example.answer.get(control_name) or []:
            seen.setdefault(entity["text"], Counter())[entity["label"]] += 1
    return {name: counts.most_common(1)[0][0] for name, counts in seen.items() if name.strip()}


def gazetteer_spans(names: dict[str, str], text: str) -> list[dict]:
    """Entities ({text, label, start, end}) where the gazetteer's names stand in the text as whole words."""
    taken: list[tuple[int, int]] = []
    entities = []
    for name in sorted(names, key=lambda n: (-len(n), n)):
        for match in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            start, end = match.span()
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                entities.append({"text": name, "label": names[name], "start": start, "end": end})
    return sorted(entities, key=lambda e: (e["start"], e["end"]))
