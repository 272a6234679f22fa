"""One task's gold value against a predicted one, per control kind (pure): what `evaluate` adds up, and what
a live comparison of an annotation with the prediction the annotator saw can call the same way.

Values are in the form `Control.from_result` reads from an annotation and `Control.check` gives for a
model's answer (labeling/controls.py); a missing prediction is None and is wrong.

- Choices: the label sets are equal.
- Labels (spans): (start, end, label) triples; "exact" needs the same offsets, "overlap" pairs each predicted
  span with at most one gold span of the same label that shares at least one character (largest overlap
  first). Counts per label: tp, fp, fn.
- TextArea: the texts are equal (whitespace around and inside aside); token F1 (SQuAD-style, over casefolded
  word tokens of all the texts) gives partial credit.
- Taxonomy: the sets of paths are equal; per path tp/fp/fn; per node of the paths with their ancestors
  (hierarchical precision/recall: a wrong leaf under the right branch still earns the branch).
- Rating, Number: equal; the absolute error.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

Span = tuple[int, int, str]
KINDS = ("Choices", "Labels", "TextArea", "Taxonomy", "Rating", "Number")


def compare(tag: str, gold: Any, predicted: Any) -> dict:
    """The figures one task gives a control of this tag: always "correct" (bool), plus the kind's own."""
    if tag == "Choices":
        return compare_choices(gold, predicted)
    if tag == "Labels":
        return compare_spans(gold, predicted)
    if tag == "TextArea":
        return compare_texts(gold, predicted)
    if tag == "Taxonomy":
        return compare_paths(gold, predicted)
    if tag in ("Rating", "Number"):
        return compare_numbers(gold, predicted)
    raise ValueError(f"no comparison for control tag {tag!r}; known: {', '.join(KINDS)}")


def compare_choices(gold: list[str], predicted: list[str] | None) -> dict:
    return {"correct": predicted is not None and set(predicted) == set(gold)}


# --- spans ---------------------------------------------------------------------------------------------


def span_set(value: list[dict] | None) -> set[Span]:
    """(start, end, label) of a span value (entities with offsets)."""
    return {(e["start"], e["end"], e["label"]) for e in value or []}


def compare_spans(gold: list[dict], predicted: list[dict] | None) -> dict:
    """{"correct": same span set, "exact": {label: {tp, fp, fn}}, "overlap": {label: {tp, fp, fn}}}."""
    gold_spans, predicted_spans = span_set(gold), span_set(predicted)
    return {
        "correct": predicted is not None and gold_spans == predicted_spans,
        "exact": span_counts(gold_spans, predicted_spans, overlap=False),
        "overlap": span_counts(gold_spans, predicted_spans, overlap=True),
    }


def span_counts(gold: set[Span], predicted: set[Span], overlap: bool) -> dict[str, dict[str, int]]:
    """{label: {tp, fp, fn}} for every label in either set."""
    counts = {}
    for label in sorted({s[2] for s in gold | predicted}):
        g = [s for s in gold if s[2] == label]
        p = [s for s in predicted if s[2] == label]
        tp = len(_overlap_pairs(g, p)) if overlap else len(set(g) & set(p))
        counts[label] = {"tp": tp, "fp": len(p) - tp, "fn": len(g) - tp}
    return counts


def _overlap_pairs(gold: list[Span], predicted: list[Span]) -> list[tuple[Span, Span]]:
    """One-to-one pairs of overlapping spans, largest shared length first (ties: text order)."""
    candidates = sorted(
        (
            (min(g[1], p[1]) - max(g[0], p[0]), g, p)
            for g in gold
            for p in predicted
            if min(g[1], p[1]) > max(g[0], p[0])
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_gold, used_predicted, pairs = set(), set(), []
    for _shared, g, p in candidates:
        if g not in used_gold and p not in used_predicted:
            used_gold.add(g)
            used_predicted.add(p)
            pairs.append((g, p))
    return pairs


# --- free text -----------------------------------------------------------------------------------------

TOKEN = re.compile(r"\w+", re.UNICODE)


def text_tokens(texts: list[str] | None) -> list[str]:
    """Casefolded word tokens of all the texts."""
    return [t.casefold() for text in texts or [] for t in TOKEN.findall(text)]


def token_f1(gold: list[str], predicted: list[str] | None) -> float:
    """F1 of the token multisets (1 when both have no token, 0 when one has none)."""
    g, p = Counter(text_tokens(gold)), Counter(text_tokens(predicted))
    if not g and not p:
        return 1.0 if predicted is not None else 0.0
    shared = sum((g & p).values())
    if not shared:
        return 0.0
    precision, recall = shared / sum(p.values()), shared / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def compare_texts(gold: list[str], predicted: list[str] | None) -> dict:
    exact = predicted is not None and Counter(map(_squeeze, gold)) == Counter(map(_squeeze, predicted))
    return {"correct": exact, "token_f1": token_f1(gold, predicted)}


# --- taxonomy ------------------------------------------------------------------------------------------


def compare_paths(gold: list[list[str]], predicted: list[list[str]] | None) -> dict:
    """{"correct", "path": {tp, fp, fn}, "node": {tp, fp, fn}} (nodes: every path's prefixes)."""
    g, p = {tuple(x) for x in gold}, {tuple(x) for x in predicted or []}
    gn, pn = _prefixes(g), _prefixes(p)
    return {
        "correct": predicted is not None and g == p,
        "path": {"tp": len(g & p), "fp": len(p - g), "fn": len(g - p)},
        "node": {"tp": len(gn & pn), "fp": len(pn - gn), "fn": len(gn - pn)},
    }


def _prefixes(paths: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {path[:depth] for path in paths for depth in range(1, len(path) + 1)}


# --- numbers -------------------------------------------------------------------------------------------


def compare_numbers(gold: float, predicted: float | None) -> dict:
    """{"correct", "error": |predicted - gold| (None without a prediction)}."""
    if predicted is None:
        return {"correct": False, "error": None}
    return {"correct": predicted == gold, "error": abs(predicted - gold)}
