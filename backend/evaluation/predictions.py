"""Per-task results of an evaluation: predictions.jsonl rows, and the tasks a report should show (pure).

A row: task (its id or file:line), text, gold and predicted (in the row form of labeling/rows.py, the form
seed files and `label` output use), score, correct, error, per-control comparisons (structured configs),
tokens {prompt, completion}, the ids of the demonstrations its prompt held, and its fold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.evaluation.compare import compare_choices
from backend.evaluation.structured import compare_task
from backend.labeling.rows import row_label

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.labeling.spec import LabelingSpec

SHOWN = 10  # tasks per list in the report


def task_row(
    spec: LabelingSpec,
    example: Example,
    *,
    labels: tuple | None,
    values: dict | None,
    score: float | None,
    error: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    demonstrations: list[str],
    fold: int,
) -> dict:
    """One predictions.jsonl row; `labels`/`values` are the model's answer (None when it failed)."""
    failed = labels is None
    if spec.structured:
        verdict = compare_task(spec.controls, example.answer, None if failed else values)
    else:
        verdict = compare_choices(list(example.labels), None if labels is None else list(labels))
    row = {
        "task": example.ref,
        "text": example.text,
        "gold": row_label(spec, example.labels, example.answer, example.text),
        "predicted": None if failed else row_label(spec, labels, values, example.text),
        "score": score,
        "correct": verdict["correct"],
        "error": error,
    }
    if spec.structured:
        row["controls"] = verdict["controls"]
    row.update(
        tokens={"prompt": prompt_tokens, "completion": completion_tokens}, demonstrations=demonstrations, fold=fold
    )
    return row


def write_predictions(rows: list[dict], path: Path) -> Path:
    """predictions.jsonl, one row per task, in the order the tasks were read."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def notable(rows: list[dict], limit: int = SHOWN) -> dict[str, list[dict]]:
    """The tasks worth a look: the most confident wrong answers, the least confident right ones, and (for
    answers without a score) the first wrong ones."""
    scored = [r for r in rows if isinstance(r.get("score"), (int, float))]
    wrong = [r for r in scored if not r["correct"]]
    right = [r for r in scored if r["correct"]]
    return {
        "confident_wrong": sorted(wrong, key=lambda r: -r["score"])[:limit],
        "unsure_right": sorted(right, key=lambda r: r["score"])[:limit],
        "wrong_unscored": [r for r in rows if not r["correct"] and not isinstance(r.get("score"), (int, float))][
            :limit
        ],
    }


def brief(value: Any, limit: int = 120) -> str:
    """A gold or predicted value in one short line for a report table."""
    text = value if isinstance(value, str) else json.dumps(_spans_brief(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _spans_brief(value: Any) -> Any:
    """Spans shown as "text/label" (their offsets are in predictions.jsonl)."""
    if isinstance(value, dict):
        return {k: _spans_brief(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) and "labels" in v for v in value):
        return [f"{v.get('text')}/{'+'.join(v['labels'])}" for v in value]
    return value
