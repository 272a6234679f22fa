"""The evaluation of a structured config (spans, several controls, text, taxonomy, rating, number) (pure).

Each task has a gold answer ({control name: value}, in annotation form) and the model's answer (the same
form, None when it failed). A control counts for a task only when the gold answer has it; a task is right
when every control it has gold for is exactly right. A span control the model's answer leaves out is an
answer of no spans (the prompt tells the model to leave out what does not apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.evaluation.compare import compare
from backend.evaluation.control_metrics import share, summarize
from backend.evaluation.metrics import EvalItem, calibration, recommended_threshold, scored_coverage


@dataclass(frozen=True)
class StructuredItem:
    """One evaluated task: gold and predicted answers, the model's score, a baseline's answer."""

    gold: dict
    predicted: dict | None
    score: float | None = None
    baseline: dict | None = None


def predicted_value(control, answer: dict | None) -> Any | None:
    """A control's value in a model's answer; a span list it left out is empty, anything else is missing."""
    if answer is None:
        return None
    if control.name not in answer and control.tag == "Labels":
        return []
    return answer.get(control.name)


def compare_task(controls, gold: dict, predicted: dict | None) -> dict:
    """{"correct": every gold control right, "controls": {name: compare(...)}} for one task."""
    found = {c.name: compare(c.tag, gold[c.name], predicted_value(c, predicted)) for c in controls if c.name in gold}
    return {"correct": bool(found) and all(f["correct"] for f in found.values()), "controls": found}


def evaluate_structured(controls, items: list[StructuredItem], bins: int = 10, target_accuracy: float = 0.9) -> dict:
    """The evaluation as a JSON-ready dict: n, answered, failed; exact_match {all, answered} (every control
    right); controls {name: summary (control_metrics.summarize) with its "baseline" summary or None};
    calibration, coverage and recommended_threshold over task correctness when tasks have scores."""
    verdicts = [compare_task(controls, item.gold, item.predicted)["correct"] for item in items]
    answered = [v for v, item in zip(verdicts, items) if item.predicted is not None]
    has_baseline = any(item.baseline is not None for item in items)
    per_control = {}
    for control in controls:
        scored = [item for item in items if control.name in item.gold]
        golds = [item.gold[control.name] for item in scored]
        labels = list(control.label_values)
        summary = summarize(
            control.tag, labels, golds, [predicted_value(control, i.predicted) for i in scored], control.multiple
        )
        summary["baseline"] = (
            summarize(
                control.tag, labels, golds, [predicted_value(control, i.baseline) for i in scored], control.multiple
            )
            if has_baseline and scored
            else None
        )
        per_control[control.name] = summary
    # Calibration and thresholds treat "every control right" as a correct task.
    as_items = [EvalItem(("right",), ("right",) if ok else ("wrong",), item.score) for ok, item in zip(verdicts, items)]
    curve = scored_coverage(as_items)
    baseline_right = [compare_task(controls, i.gold, i.baseline)["correct"] for i in items] if has_baseline else []
    return {
        "kind": "structured",
        "n": len(items),
        "answered": len(answered),
        "failed": len(items) - len(answered),
        "exact_match": {"all": share(sum(verdicts), len(items)), "answered": share(sum(answered), len(answered))},
        "controls": per_control,
        "calibration": calibration(as_items, bins),
        "coverage": curve,
        "recommended_threshold": recommended_threshold(curve, target_accuracy),
        "target_accuracy": target_accuracy,
        "baseline": {"exact_match": share(sum(baseline_right), len(items))} if has_baseline else None,
    }
