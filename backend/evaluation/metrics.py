"""Metrics of predicted labels against gold labels: accuracy, F1, confusion, calibration, coverage (pure)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Confusion-matrix column of the tasks the model failed to answer (single-choice).
FAILED = "(failed)"

Labels = tuple[str, ...]


@dataclass(frozen=True)
class EvalItem:
    """One evaluated task: gold labels, the model's labels (None: it failed), its score, a baseline's labels."""

    gold: Labels
    predicted: Labels | None
    score: float | None = None
    baseline: Labels | None = None


def is_correct(gold: Labels, predicted: Labels | None) -> bool:
    """Exact match of the label sets; a failed answer (None) is wrong."""
    return predicted is not None and set(predicted) == set(gold)


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; each is 0 when undefined (precision is 0 when nothing was predicted,
    recall is 0 when there is no gold instance, F1 is 0 when precision + recall is 0), as sklearn's zero_division=0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def label_order(labels: list[str], golds: list[Labels], *predictions: list[Labels | None]) -> list[str]:
    """The config's labels in order, then any other label seen in gold or predictions (first seen first),
    so a gold label outside the config (a renamed Choice) is counted rather than silently dropped."""
    order = list(dict.fromkeys(labels))
    seen = set(order)
    groups: tuple[Sequence[Labels | None], ...] = (golds, *predictions)
    for rows in groups:
        for row in rows:
            for label in row or ():
                if label not in seen:
                    seen.add(label)
                    order.append(label)
    return order


def label_counts(golds: list[Labels], preds: list[Labels | None], label: str) -> dict[str, int]:
    """TP/FP/FN/TN of one label over all tasks; a failed task predicts nothing (its gold labels are FN)."""
    tp = fp = fn = 0
    for gold, pred in zip(golds, preds):
        in_gold, in_pred = label in gold, pred is not None and label in pred
        tp += in_gold and in_pred
        fp += in_pred and not in_gold
        fn += in_gold and not in_pred
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(golds) - tp - fp - fn}


def per_label_scores(golds: list[Labels], preds: list[Labels | None], labels: list[str]) -> dict[str, dict]:
    """{label: {precision, recall, f1, support, predicted}} for every label, in order."""
    table = {}
    for label in labels:
        counts = label_counts(golds, preds, label)
        precision, recall, f1 = precision_recall_f1(counts["tp"], counts["fp"], counts["fn"])
        table[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": counts["tp"] + counts["fn"],
            "predicted": counts["tp"] + counts["fp"],
        }
    return table


def macro_f1(per_label: dict[str, dict]) -> float | None:
    """Mean F1 over the labels that occur in gold OR predictions (None when there is none).

    Convention (sklearn's f1_score(average="macro") without labels=): a config label that neither occurs in the
    evaluated gold labels nor was ever predicted has an undefined F1; counting it as 0 would punish the model for
    the sample (a small project that has no task of that label yet), counting it as 1 would flatter it. A label
    present in gold but never predicted counts with F1 0, and one predicted but absent from gold too.
    """
    present = [row["f1"] for row in per_label.values() if row["support"] or row["predicted"]]
    return sum(present) / len(present) if present else None


def micro_scores(golds: list[Labels], preds: list[Labels | None], labels: list[str]) -> tuple[float, float, float]:
    """Micro precision, recall, F1: TP/FP/FN pooled over labels (single-choice, no failures: micro-F1 = accuracy)."""
    totals = [label_counts(golds, preds, label) for label in labels]
    return precision_recall_f1(*(sum(row[key] for row in totals) for key in ("tp", "fp", "fn")))


def accuracy(golds: list[Labels], preds: list[Labels | None]) -> dict[str, float | None]:
    """{"all": correct / all tasks (failed ones are wrong), "answered": correct / answered tasks}; None if no task."""
    correct = sum(is_correct(gold, pred) for gold, pred in zip(golds, preds))
    answered = sum(pred is not None for pred in preds)
    return {
        "all": correct / len(golds) if golds else None,
        "answered": correct / answered if answered else None,
    }


def classification(golds: list[Labels], preds: list[Labels | None], labels: list[str]) -> dict:
    """Accuracy, macro/micro F1 and the per-label table of one set of predictions."""
    per_label = per_label_scores(golds, preds, labels)
    micro_p, micro_r, micro_f = micro_scores(golds, preds, labels)
    return {
        "failed": sum(pred is None for pred in preds),
        "accuracy": accuracy(golds, preds),
        "macro_f1": macro_f1(per_label) if golds else None,
        "micro_f1": micro_f if golds else None,
        "micro_precision": micro_p if golds else None,
        "micro_recall": micro_r if golds else None,
        "per_label": per_label,
    }


def single_label(labels: Labels, what: str) -> str:
    """The one label of a single-choice row; anything else is a caller's bug worth naming."""
    if len(labels) != 1:
        raise ValueError(f"single-choice evaluation needs exactly one {what} label per task, got {list(labels)!r}")
    return labels[0]


def confusion_single(golds: list[Labels], preds: list[Labels | None], labels: list[str]) -> dict[str, dict[str, int]]:
    """{gold: {predicted: count}}: every label as a row, every label plus FAILED as a column (zeros included)."""
    matrix = {gold: dict.fromkeys([*labels, FAILED], 0) for gold in labels}
    for gold, pred in zip(golds, preds):
        column = FAILED if pred is None else single_label(pred, "predicted")
        matrix[single_label(gold, "gold")][column] += 1
    return matrix


def confusion_multi(golds: list[Labels], preds: list[Labels | None], labels: list[str]) -> dict[str, dict[str, int]]:
    """{label: {tp, fp, fn, tn}}: one 2x2 confusion matrix per label (a failed task predicts no label)."""
    return {label: label_counts(golds, preds, label) for label in labels}


def bin_index(score: float, edges: list[float]) -> int:
    """Equal-width bin of a score: [low, high), the last bin closed at 1; out-of-range scores go to the end bins."""
    return min(max(bisect.bisect_right(edges, score) - 1, 0), len(edges) - 1)


def expected_calibration_error(scores: list[float], correct: list[bool], bins: int = 10) -> tuple[float, list[dict]]:
    """ECE = sum over bins of count/N * |accuracy - mean score| with `bins` equal-width bins over [0, 1];
    returns it and every bin ({low, high, count, mean_score, accuracy}; mean_score/accuracy None when empty)."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    edges = [i / bins for i in range(bins)]
    members: list[list[int]] = [[] for _ in range(bins)]
    for position, score in enumerate(scores):
        members[bin_index(score, edges)].append(position)
    rows, ece = [], 0.0
    for i, positions in enumerate(members):
        count = len(positions)
        mean_score: float | None = None
        acc: float | None = None
        if count:
            mean_score = sum(scores[p] for p in positions) / count
            acc = sum(correct[p] for p in positions) / count
            ece += count / len(scores) * abs(acc - mean_score)
        high = (i + 1) / bins
        rows.append({"low": edges[i], "high": high, "count": count, "mean_score": mean_score, "accuracy": acc})
    return ece, rows


def coverage_curve(scores: list[float], correct: list[bool], total: int) -> list[dict]:
    """For every distinct score t (ascending): accuracy of the scored tasks with score >= t and their share of all
    `total` tasks (unscored and failed tasks are never covered)."""
    ranked = sorted(zip(scores, correct), key=lambda pair: -pair[0])
    points, hits = [], 0
    for position, (score, ok) in enumerate(ranked):
        hits += ok
        last_of_its_score = position + 1 == len(ranked) or ranked[position + 1][0] != score
        if last_of_its_score:
            kept = position + 1
            points.append({"threshold": score, "coverage": kept / total, "accuracy": hits / kept})
    return points[::-1]


def recommended_threshold(curve: list[dict], target_accuracy: float) -> float | None:
    """The lowest threshold (largest coverage) whose accuracy reaches the target, else None."""
    good = [point["threshold"] for point in curve if point["accuracy"] >= target_accuracy and point["coverage"] > 0]
    return min(good) if good else None


def usable_score(score: float | None) -> bool:
    """A score that can be binned: present and finite."""
    return score is not None and math.isfinite(score)


def calibration(items: list[EvalItem], bins: int) -> dict | None:
    """{ece, bins, count} over the items with a score; None when no item has one."""
    scored = _scored(items)
    if not scored:
        return None
    correct = [is_correct(item.gold, item.predicted) for item, _ in scored]
    ece, rows = expected_calibration_error([score for _, score in scored], correct, bins)
    return {"ece": ece, "count": len(scored), "bins": rows}


def scored_coverage(items: list[EvalItem]) -> list[dict]:
    """The coverage curve of the items with a score, as shares of all items."""
    scored = _scored(items)
    correct = [is_correct(item.gold, item.predicted) for item, _ in scored]
    return coverage_curve([score for _, score in scored], correct, len(items))


def _scored(items: list[EvalItem]) -> list[tuple[EvalItem, float]]:
    """The items with a usable score, each with it."""
    return [(item, item.score) for item in items if item.score is not None and usable_score(item.score)]


def difference(model: float | None, baseline: float | None) -> float | None:
    """model - baseline, None when either is missing."""
    return None if model is None or baseline is None else model - baseline


def baseline_part(golds: list[Labels], baselines: list[Labels | None], labels: list[str]) -> dict | None:
    """accuracy/macro_f1/per_label of the baseline predictions; None when no item has one (a missing one is wrong)."""
    if all(pred is None for pred in baselines):
        return None
    scores = classification(golds, baselines, labels)
    return {key: scores[key] for key in ("failed", "accuracy", "macro_f1", "micro_f1", "per_label")}


def evaluate(
    items: list[EvalItem], labels: list[str], multiple: bool, bins: int = 10, target_accuracy: float = 0.9
) -> dict:
    """The evaluation as a JSON-ready dict.

    n, answered, failed, labels, multiple; accuracy {all, answered} (exact match of label sets for multi-choice;
    a failed task is wrong in "all" and left out of "answered"); macro_f1, micro_f1 (and micro precision/recall);
    per_label {label: {precision, recall, f1, support, predicted}}; confusion (single-choice {gold: {predicted:
    count}} with a FAILED column, multi-choice {label: {tp, fp, fn, tn}}); calibration {ece, count, bins} over
    items with a score or None; coverage [{threshold, coverage, accuracy}] ascending by threshold;
    recommended_threshold, target_accuracy; baseline {failed, accuracy, macro_f1, micro_f1, per_label} or None;
    gain {accuracy (over all tasks), macro_f1} model minus baseline, or None.
    """
    golds = [tuple(item.gold) for item in items]
    preds = [None if item.predicted is None else tuple(item.predicted) for item in items]
    baselines = [None if item.baseline is None else tuple(item.baseline) for item in items]
    order = label_order(labels, golds, preds, baselines)
    model = classification(golds, preds, order)
    confusion = confusion_multi if multiple else confusion_single
    curve = scored_coverage(items)
    baseline = baseline_part(golds, baselines, order)
    return {
        "n": len(items),
        "answered": len(items) - model["failed"],
        **model,
        "labels": order,
        "multiple": multiple,
        "confusion": confusion(golds, preds, order),
        "calibration": calibration(items, bins),
        "coverage": curve,
        "recommended_threshold": recommended_threshold(curve, target_accuracy),
        "target_accuracy": target_accuracy,
        "baseline": baseline,
        "gain": None
        if baseline is None
        else {
            "accuracy": difference(model["accuracy"]["all"], baseline["accuracy"]["all"]),
            "macro_f1": difference(model["macro_f1"], baseline["macro_f1"]),
        },
    }
