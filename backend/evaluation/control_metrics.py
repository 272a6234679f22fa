"""One control's figures over many tasks, added up from per-task comparisons (compare.py) (pure).

`summarize(tag, labels, golds, predictions)` takes the gold and predicted values of the tasks that have a
gold value for the control (a prediction is None when the model gave none) and returns a JSON-ready dict
with `n`, `failed`, `exact_match` (the share of tasks whose value is exactly right) and the kind's own:

- Choices: what `metrics.evaluate` gives a single Choices config (accuracy, macro/micro F1, per label,
  confusion).
- Labels: `exact` and `overlap`, each {per_label {precision, recall, f1, support, predicted}, precision,
  recall, f1 (micro: spans pooled over labels), macro_f1}.
- TextArea: `token_f1` (mean over tasks).
- Taxonomy: `path` and `node` {precision, recall, f1} (micro).
- Rating, Number: `mae` over the answered tasks, `answered`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from backend.evaluation.compare import compare
from backend.evaluation.metrics import EvalItem, evaluate, macro_f1, precision_recall_f1


def summarize(
    tag: str, labels: list[str], golds: list[Any], predictions: list[Any | None], multiple: bool = False
) -> dict:
    """The control's figures over these tasks (see the module docstring)."""
    tasks = [compare(tag, gold, predicted) for gold, predicted in zip(golds, predictions)]
    base = {
        "tag": tag,
        "n": len(golds),
        "failed": sum(p is None for p in predictions),
        "exact_match": share(sum(t["correct"] for t in tasks), len(tasks)),
    }
    if tag == "Choices":
        items = [EvalItem(tuple(g), None if p is None else tuple(p)) for g, p in zip(golds, predictions)]
        return {**base, **evaluate(items, labels, multiple)}
    if tag == "Labels":
        return {**base, "exact": span_scores(tasks, "exact", labels), "overlap": span_scores(tasks, "overlap", labels)}
    if tag == "TextArea":
        return {**base, "token_f1": share(sum(t["token_f1"] for t in tasks), len(tasks))}
    if tag == "Taxonomy":
        return {**base, "path": pooled(t["path"] for t in tasks), "node": pooled(t["node"] for t in tasks)}
    errors = [t["error"] for t in tasks if t["error"] is not None]
    return {**base, "answered": len(errors), "mae": share(sum(errors), len(errors))}


def span_scores(tasks: list[dict], matching: str, labels: list[str]) -> dict:
    """Per-label and pooled precision/recall/F1 of span comparisons ("exact" or "overlap")."""
    totals: dict[str, Counter] = {}
    for task in tasks:
        for label, counts in task[matching].items():
            totals.setdefault(label, Counter()).update(counts)
    order = list(dict.fromkeys([*labels, *totals]))
    per_label = {}
    for label in order:
        counts = totals.get(label, Counter())
        precision, recall, f1 = precision_recall_f1(counts["tp"], counts["fp"], counts["fn"])
        per_label[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": counts["tp"] + counts["fn"],
            "predicted": counts["tp"] + counts["fp"],
        }
    micro = pooled(totals.values())
    return {"per_label": per_label, **micro, "macro_f1": macro_f1(per_label)}


def pooled(counts) -> dict:
    """{precision, recall, f1, tp, fp, fn} of tp/fp/fn counts added up."""
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    precision, recall, f1 = precision_recall_f1(total["tp"], total["fp"], total["fn"])
    return {"precision": precision, "recall": recall, "f1": f1, "tp": total["tp"], "fp": total["fp"], "fn": total["fn"]}


def headline(summary: dict) -> tuple[str, float | None]:
    """The one figure that best says how a control did: (name, value)."""
    tag = summary["tag"]
    if tag == "Choices":
        return "accuracy", summary["accuracy"]["all"]
    if tag == "Labels":
        return "span F1 (exact)", summary["exact"]["f1"]
    if tag == "TextArea":
        return "token F1", summary["token_f1"]
    if tag == "Taxonomy":
        return "path F1", summary["path"]["f1"]
    return "mean absolute error", summary["mae"]


def share(part: float, whole: int) -> float | None:
    """part / whole, None when there is nothing to divide by."""
    return part / whole if whole else None
