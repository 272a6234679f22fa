"""Report blocks of a structured config's evaluation (evaluation/structured.py): the headline, then one
section per control in the figures of its kind, then calibration when the answers have scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.evaluation.control_metrics import headline
from backend.evaluation.metrics import difference
from backend.evaluation.report import (
    DASH,
    calibration_blocks,
    confusion_blocks,
    fmt,
    fmt_pct,
    fmt_signed,
    meta_blocks,
    per_label_table,
)


def structured_blocks(result: dict, meta: dict) -> list[tuple]:
    """Everything but the title."""
    blocks = [("h2", "Summary"), ("p", overview(result)), ("table", *summary_table(result)), *meta_blocks(meta)]
    for name, summary in result["controls"].items():
        blocks += control_blocks(name, summary)
    if result.get("calibration"):
        blocks += calibration_blocks(result)
    return blocks


def overview(result: dict) -> str:
    n = result["n"]
    return (
        f"{n} tasks, {result['answered']} answered, {result['failed']} failed "
        f"({fmt_pct(result['failed'] / n if n else None)}); {_controls(len(result['controls']))}. A task is "
        "right when every control it has a gold value for is exactly right."
    )


def summary_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """Every control's headline figure beside the baseline's."""
    base = result.get("baseline") or {}
    rows = [
        [
            "all controls exact (all tasks)",
            fmt(result["exact_match"]["all"]),
            fmt(base.get("exact_match")),
            fmt_signed(difference(result["exact_match"]["all"], base.get("exact_match"))),
        ],
        ["all controls exact (answered tasks)", fmt(result["exact_match"]["answered"]), DASH, DASH],
    ]
    for name, summary in result["controls"].items():
        figure, value = headline(summary)
        baseline = headline(summary["baseline"])[1] if summary.get("baseline") else None
        gain = difference(baseline, value) if figure == "mean absolute error" else difference(value, baseline)
        rows.append([f"{name} ({summary['tag']}): {figure}", fmt(value), fmt(baseline), fmt_signed(gain)])
    return ["figure", "model", "baseline", "gain"], rows


def control_blocks(name: str, summary: dict) -> list[tuple]:
    tag = summary["tag"]
    head = [
        ("h2", f"{name} ({tag})"),
        (
            "p",
            f"{summary['n']} tasks with a gold value, {summary['failed']} without an answer; exactly right: "
            f"{fmt(summary['exact_match'])}.",
        ),
    ]
    if tag == "Choices":
        return head + [("table", *per_label_table(summary)), *confusion_blocks(summary)[1:]]
    if tag == "Labels":
        return head + [
            (
                "p",
                "Spans per label: exact = same start, end and label; overlap = same label and at "
                "least one shared character (each gold span matched once).",
            ),
            ("table", *span_table(summary)),
        ]
    return head + [("table", *figures_table(summary))]


def span_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Per label: exact and overlap precision/recall/F1, support, predicted; then micro and macro rows."""
    exact, overlap = summary["exact"], summary["overlap"]
    base = (summary.get("baseline") or {}).get("exact")
    header = [
        "label",
        "exact P",
        "exact R",
        "exact F1",
        "overlap P",
        "overlap R",
        "overlap F1",
        "support",
        "predicted",
    ] + (["baseline exact F1"] if base else [])
    rows = []
    for label, row in exact["per_label"].items():
        o = overlap["per_label"][label]
        cells = [
            label,
            fmt(row["precision"]),
            fmt(row["recall"]),
            fmt(row["f1"]),
            fmt(o["precision"]),
            fmt(o["recall"]),
            fmt(o["f1"]),
            str(row["support"]),
            str(row["predicted"]),
        ]
        rows.append(cells + ([fmt(base["per_label"].get(label, {}).get("f1"))] if base else []))
    totals = [
        "all (micro)",
        fmt(exact["precision"]),
        fmt(exact["recall"]),
        fmt(exact["f1"]),
        fmt(overlap["precision"]),
        fmt(overlap["recall"]),
        fmt(overlap["f1"]),
        str(exact["tp"] + exact["fn"]),
        str(exact["tp"] + exact["fp"]),
    ]
    rows.append(totals + ([fmt(base["f1"])] if base else []))
    rows.append(
        ["macro F1", DASH, DASH, fmt(exact["macro_f1"]), DASH, DASH, fmt(overlap["macro_f1"]), DASH, DASH]
        + ([fmt(base["macro_f1"])] if base else [])
    )
    return header, rows


def figures_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """TextArea, Taxonomy, Rating and Number figures beside the baseline's."""
    base = summary.get("baseline") or {}
    tag = summary["tag"]
    names: list[tuple[str, Callable[[dict], Any]]] = [("exact match", lambda s: s["exact_match"])]
    if tag == "TextArea":
        names.append(("token F1 (mean)", lambda s: s["token_f1"]))
    elif tag == "Taxonomy":
        for part in ("path", "node"):
            for figure in ("precision", "recall", "f1"):
                names.append((f"{part} {figure}", _figure_of(part, figure)))
    else:
        names.append(("mean absolute error", lambda s: s["mae"]))
    rows = [[label, fmt(get(summary)), fmt(get(base)) if base else DASH] for label, get in names]
    return ["figure", "model", "baseline"], rows


def _figure_of(part: str, figure: str) -> Callable[[dict], Any]:
    return lambda summary: summary[part][figure]


def _controls(count: int) -> str:
    return "1 control" if count == 1 else f"{count} controls"
