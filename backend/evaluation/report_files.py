"""The evaluation written as evaluation.json, report.md and a self-contained report.html with inline SVG plots."""

from __future__ import annotations

import json
from pathlib import Path

from backend.evaluation.predictions import brief
from backend.evaluation.report import (
    calibration_blocks,
    confusion_blocks,
    fmt,
    meta_blocks,
    overview,
    per_label_table,
    summary_rows,
    to_html,
    to_markdown,
)
from backend.evaluation.report_structured import structured_blocks


def report_blocks(result: dict, title: str, meta: dict, tasks: dict | None = None) -> list[tuple]:
    """The whole report, format-neutral; `tasks` are the lists of predictions.notable."""
    if result.get("kind") == "structured":
        return [("h1", title), *structured_blocks(result, meta), *task_blocks(tasks)]
    summary = [("h2", "Summary"), ("p", overview(result)), ("table", *summary_rows(result))]
    if result.get("baseline") is None:
        summary.append(("p", "No baseline predictions were given."))
    return [
        ("h1", title),
        *summary,
        *meta_blocks(meta),
        ("h2", "Per label"),
        ("table", *per_label_table(result)),
        *confusion_blocks(result),
        *calibration_blocks(result),
        *task_blocks(tasks),
    ]


def task_blocks(tasks: dict | None) -> list[tuple]:
    """The tasks to look at first: confident mistakes, unsure right answers, or unscored mistakes."""
    if tasks is None:
        return []

    def table(rows: list[dict]) -> tuple:
        return (
            "table",
            ["task", "score", "gold", "predicted", "text"],
            [
                [
                    str(r["task"]),
                    fmt(r["score"]),
                    brief(r["gold"]),
                    brief(r["predicted"])
                    if r["predicted"] is not None
                    else f"(failed: {r['error'] or 'no answer'})"[:120],
                    brief(r["text"], 160),
                ]
                for r in rows
            ],
        )

    blocks = [("h2", "Tasks to look at")]
    if tasks["confident_wrong"]:
        blocks += [
            (
                "p",
                "The most confident wrong answers (a threshold cannot catch these; the gold label may be wrong too):",
            ),
            table(tasks["confident_wrong"]),
        ]
    if tasks["unsure_right"]:
        blocks += [
            ("p", "The least confident right answers (what a threshold would throw away):"),
            table(tasks["unsure_right"]),
        ]
    if tasks["wrong_unscored"]:
        blocks += [
            (
                "p",
                "Wrong answers without a score (the server gave no log-probabilities, or the config's "
                "answers are not scored):",
            ),
            table(tasks["wrong_unscored"]),
        ]
    if len(blocks) == 1:
        blocks.append(("p", "Every task was answered right."))
    blocks.append(("p", "Every task's gold and predicted answer, score, tokens and demonstrations: predictions.jsonl."))
    return blocks


# --- Markdown ---------------------------------------------------------------------------------------------------


def write_reports(result: dict, out_dir: Path, title: str, meta: dict, tasks: dict | None = None) -> dict[str, Path]:
    """Writes evaluation.json ({title, meta, result}), report.md and report.html into out_dir (created if needed);
    returns {"json": path, "markdown": path, "html": path}. `tasks`: the lists of predictions.notable."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(result, title, meta, tasks)
    paths = {"json": out_dir / "evaluation.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    document = {"title": title, "meta": meta, "result": result}
    paths["json"].write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["html"].write_text(to_html(blocks, title), encoding="utf-8")
    return paths
