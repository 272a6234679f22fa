"""The blocks of an evaluation report and their rendering as Markdown and as a self-contained HTML page with
inline SVG plots (report_files.py assembles the whole report and writes it)."""

from __future__ import annotations

import html
import json

from backend.evaluation.metrics import FAILED

DASH = "\u2014"
# Score thresholds shown in the accuracy/coverage table (besides the recommended one).
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MD_SPECIAL = "\\`*_[]<>|&"

# A report is a list of blocks, rendered to Markdown or HTML:
# ("h1"|"h2"|"p", text), ("table", header, rows), ("svg", markup; HTML only).


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure with fixed decimals, a dash when missing."""
    return DASH if value is None else f"{value:.{digits}f}"


def fmt_signed(value: float | None) -> str:
    """A difference with its sign."""
    return DASH if value is None else f"{value:+.3f}"


def fmt_pct(value: float | None) -> str:
    """A share as a percentage."""
    return DASH if value is None else f"{100 * value:.1f} %"


def fmt_meta(value: object) -> str:
    """A run setting as text: numbers short, structures as JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def summary_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Model vs baseline and the gain on the headline figures."""
    base, gain = result.get("baseline"), result.get("gain") or {}
    rows: list[list[str]] = [
        [
            "Accuracy (all tasks)",
            fmt(result["accuracy"]["all"]),
            fmt(base["accuracy"]["all"]) if base else DASH,
            fmt_signed(gain.get("accuracy")),
        ],
        [
            "Accuracy (answered tasks)",
            fmt(result["accuracy"]["answered"]),
            fmt(base["accuracy"]["answered"]) if base else DASH,
            DASH,
        ],
        [
            "Macro-F1",
            fmt(result["macro_f1"]),
            fmt(base["macro_f1"]) if base else DASH,
            fmt_signed(gain.get("macro_f1")),
        ],
        ["Micro-F1", fmt(result["micro_f1"]), fmt(base["micro_f1"]) if base else DASH, DASH],
        ["Failed tasks", str(result["failed"]), str(base["failed"]) if base else DASH, DASH],
        ["ECE", fmt(ece(result)), DASH, DASH],
        [
            f"Recommended threshold (accuracy \u2265 {fmt(result['target_accuracy'])})",
            fmt(result["recommended_threshold"]),
            DASH,
            DASH,
        ],
    ]
    if base is None:
        return ["metric", "model"], [row[:2] for row in rows]
    return ["metric", "model", "baseline", "gain"], rows


def ece(result: dict) -> float | None:
    """The ECE, None without scores."""
    return result["calibration"]["ece"] if result.get("calibration") else None


def overview(result: dict) -> str:
    """One sentence on what was evaluated."""
    kind = "multi-choice (accuracy is exact match of the label set)" if result["multiple"] else "single-choice"
    n = result["n"]
    return (
        f"{n} tasks, {result['answered']} answered, {result['failed']} failed "
        f"({fmt_pct(result['failed'] / n if n else None)}); {kind} over {len(result['labels'])} labels."
    )


def per_label_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """Precision, recall, F1, support and predictions per label (and the baseline's F1)."""
    base = result.get("baseline")
    header = ["label", "precision", "recall", "F1", "support", "predicted"] + (["baseline F1"] if base else [])
    rows = []
    for label, row in result["per_label"].items():
        cells = [
            label,
            fmt(row["precision"]),
            fmt(row["recall"]),
            fmt(row["f1"]),
            str(row["support"]),
            str(row["predicted"]),
        ]
        rows.append(cells + ([fmt(base["per_label"][label]["f1"])] if base else []))
    return header, rows


def confusion_grid(result: dict) -> tuple[list[str], list[str], list[list[int]]]:
    """Row names, column names and counts of the confusion matrix (single: gold x predicted; multi: label x TP..TN)."""
    confusion = result["confusion"]
    rows = list(confusion)
    columns = ["tp", "fp", "fn", "tn"] if result["multiple"] else [*result["labels"], FAILED]
    counts = [[confusion[row][column] for column in columns] for row in rows]
    return rows, [c.upper() for c in columns] if result["multiple"] else columns, counts


def confusion_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """The confusion matrix as a table."""
    rows, columns, counts = confusion_grid(result)
    corner = "label" if result["multiple"] else "gold \\ predicted"
    return [corner, *columns], [[name, *map(str, line)] for name, line in zip(rows, counts)]


def calibration_table(calibration: dict) -> tuple[list[str], list[list[str]]]:
    """Per score bin: tasks, mean score, accuracy and the gap."""
    rows = []
    for b in calibration["bins"]:
        gap = None if b["count"] == 0 else abs(b["accuracy"] - b["mean_score"])
        closing = "]" if b["high"] >= 1 else ")"
        rows.append(
            [
                f"[{b['low']:.2f}, {b['high']:.2f}{closing}",
                str(b["count"]),
                fmt(b["mean_score"]),
                fmt(b["accuracy"]),
                fmt(gap),
            ]
        )
    return ["score bin", "tasks", "mean score", "accuracy", "|accuracy - score|"], rows


def point_at(curve: list[dict], threshold: float) -> dict | None:
    """The coverage point of `score >= threshold`: the one with the smallest threshold not below it."""
    above = [point for point in curve if point["threshold"] >= threshold]
    return min(above, key=lambda point: point["threshold"]) if above else None


def threshold_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """Accuracy and coverage when only pre-labels with score >= t are kept, for a few t."""
    chosen = result["recommended_threshold"]
    grid = sorted({*THRESHOLD_GRID, *([chosen] if chosen is not None else [])})
    rows = []
    for t in grid:
        point = point_at(result["coverage"], t)
        mark = " (recommended)" if t == chosen else ""
        rows.append(
            [
                f"\u2265 {t:.3g}{mark}",
                fmt_pct(point["coverage"] if point else 0.0),
                fmt(point["accuracy"] if point else None),
            ]
        )
    return ["score", "coverage (share of all tasks)", "accuracy"], rows


def recommendation(result: dict) -> str:
    """What the recommended threshold means, or why there is none."""
    target, chosen = result["target_accuracy"], result["recommended_threshold"]
    if not result["coverage"]:
        return "No task has a score (the server gave no log-probabilities): no threshold can be recommended."
    if chosen is None:
        return f"No score threshold reaches the target accuracy {fmt(target)}."
    point = point_at(result["coverage"], chosen)
    if point is None:  # the threshold was chosen from this curve, so its point is on it
        raise ValueError(f"threshold {chosen!r} is not on the coverage curve")
    return (
        f"Recommended threshold: {fmt(chosen)}. Pre-labels with score \u2265 {fmt(chosen)} are right "
        f"{fmt(point['accuracy'])} of the time and cover {fmt_pct(point['coverage'])} of all tasks "
        f"(target accuracy {fmt(target)}; the lowest threshold that reaches it)."
    )


def calibration_blocks(result: dict) -> list[tuple]:
    """Calibration and threshold sections, with their plots."""
    calibration = result.get("calibration")
    if calibration is None:
        return [("h2", "Calibration and score threshold"), ("p", recommendation(result))]
    bins = len(calibration["bins"])
    return [
        ("h2", "Calibration"),
        (
            "p",
            f"ECE = {fmt(calibration['ece'])} over {calibration['count']} scored tasks "
            f"({bins} equal-width score bins; the mean of |accuracy - mean score| weighted by tasks per bin).",
        ),
        ("table", *calibration_table(calibration)),
        ("svg", reliability_svg(calibration)),
        ("h2", "Score threshold"),
        ("p", recommendation(result)),
        ("table", *threshold_table(result)),
        ("svg", coverage_svg(result["coverage"], result["target_accuracy"], result["recommended_threshold"])),
    ]


def meta_blocks(meta: dict) -> list[tuple]:
    """The run's settings and accounting."""
    if not meta:
        return []
    return [("h2", "Run"), ("table", ["setting", "value"], [[str(k), fmt_meta(v)] for k, v in meta.items()])]


def confusion_blocks(result: dict) -> list[tuple]:
    """The confusion matrix: a table and a heatmap."""
    rows, columns, counts = confusion_grid(result)
    note = (
        "One 2x2 matrix per label: TP/FP/FN/TN over all tasks (a failed task predicts no label)."
        if result["multiple"]
        else f"Rows: gold label; columns: predicted label, {FAILED} = no answer."
    )
    highlight = set() if result["multiple"] else {FAILED}
    return [
        ("h2", "Confusion matrix"),
        ("p", note),
        ("table", *confusion_table(result)),
        ("svg", heatmap_svg(rows, columns, counts, highlight, result["multiple"])),
    ]


def md_escape(text: str) -> str:
    """Text safe inside Markdown (table cells included): one line, special characters backslash-escaped."""
    text = " ".join(str(text).splitlines())
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in text)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table, first column left-aligned, the rest right-aligned."""
    lines = [
        "| " + " | ".join(md_escape(cell) for cell in header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(blocks: list[tuple]) -> str:
    """The blocks as Markdown (plots are left out)."""
    parts = []
    for kind, *body in blocks:
        if kind in ("h1", "h2"):
            parts.append(("# " if kind == "h1" else "## ") + md_escape(body[0]))
        elif kind == "p":
            parts.append(md_escape(body[0]))
        elif kind == "table":
            parts.append(md_table(*body))
    return "\n\n".join(parts) + "\n"


# --- HTML -------------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; }
th { background: #f6f8fa; max-width: 12em; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
td { text-align: right; }
td:first-child { text-align: left; }
svg { display: block; margin: .5em 0 1.5em; font-family: system-ui, sans-serif; }
"""


def esc(text: object) -> str:
    """Text and attribute values escaped for HTML (and SVG)."""
    return html.escape(str(text), quote=True)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table with a header row."""
    head = "<tr>" + "".join(f"<th>{esc(cell)}</th>" for cell in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f'<div class="scroll"><table>\n<thead>{head}</thead>\n<tbody>\n{body}</tbody>\n</table></div>'


def html_block(kind: str, *body) -> str:
    """One block as HTML."""
    if kind in ("h1", "h2", "p"):
        return f"<{kind}>{esc(body[0])}</{kind}>"
    if kind == "table":
        return html_table(*body)
    return body[0]  # svg markup, built with every text escaped


def to_html(blocks: list[tuple], title: str) -> str:
    """A self-contained page (also well-formed XML: void elements closed, no named entities)."""
    content = "\n".join(html_block(*block) for block in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{content}\n</body>\n</html>\n"
    )


# --- SVG --------------------------------------------------------------------------------------------------------


def svg(width: float, height: float, label: str, body: str) -> str:
    """An inline SVG element with an accessible name."""
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{esc(label)}"><title>{esc(label)}</title>\n{body}</svg>'
    )


def text(x: float, y: float, content: str, size: float = 12, anchor: str = "middle", extra: str = "") -> str:
    """An SVG text element."""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:.1f}" text-anchor="{anchor}"{extra}>{esc(content)}</text>\n'


def line(x1: float, y1: float, x2: float, y2: float, style: str) -> str:
    """An SVG line."""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}/>\n'


def shorten(label: str, limit: int = 22) -> str:
    """A label cut to fit an axis."""
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def blend(share: float, alert: bool) -> str:
    """White to blue (or to red for the failed column) by share in [0, 1]."""
    low, high = ((255, 245, 240), (165, 15, 21)) if alert else ((247, 251, 255), (8, 48, 107))
    share = min(max(share, 0.0), 1.0)
    return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(low, high))


def heatmap_svg(rows: list[str], columns: list[str], counts: list[list[int]], alert: set[str], multi: bool) -> str:
    """Counts in cells shaded by their share of the row (so rare labels stay visible)."""
    cell = max(18.0, min(56.0, 640 / max(len(columns), 1)))
    left = 14 + 7 * max([len(shorten(r)) for r in rows] + [4])
    top = 30 + 5 * max([len(shorten(c)) for c in columns] + [4])
    width, height = left + cell * len(columns) + 20, top + cell * len(rows) + 20
    parts = [
        text(left + cell * len(columns) / 2, 14, "" if multi else "predicted", 12, extra=' font-weight="bold"'),
        text(
            14,
            top + cell * len(rows) / 2,
            "label" if multi else "gold",
            12,
            extra=f' font-weight="bold" transform="rotate(-90 14 {top + cell * len(rows) / 2:.1f})"',
        ),
    ]
    for j, column in enumerate(columns):
        x = left + cell * (j + 0.5)
        parts.append(
            f"<g><title>{esc(column)}</title>"
            + text(x, top - 6, shorten(column), 11, "start", f' transform="rotate(-45 {x:.1f} {top - 6:.1f})"')
            + "</g>\n"
        )
    for i, (row, line_counts) in enumerate(zip(rows, counts)):
        y = top + cell * i
        parts.append(
            f"<g><title>{esc(row)}</title>" + text(left - 6, y + cell / 2 + 4, shorten(row), 11, "end") + "</g>\n"
        )
        total = sum(line_counts) or 1
        for j, count in enumerate(line_counts):
            share = count / total
            x = left + cell * j
            tip = f"{row} \u2192 {columns[j]}: {count} ({100 * share:.0f} % of the row)"
            parts.append(
                f'<g><title>{esc(tip)}</title><rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" '
                f'height="{cell:.1f}" fill="{blend(share, columns[j] in alert)}" stroke="#ffffff"/>'
                + text(
                    x + cell / 2,
                    y + cell / 2 + 4,
                    str(count),
                    min(12, cell * 0.4),
                    extra=f' fill="{"#ffffff" if share > 0.5 else "#1f2328"}"',
                )
                + "</g>\n"
            )
    return svg(width, height, "Confusion matrix heatmap" + (" per label" if multi else ""), "".join(parts))


class Frame:
    """A unit-square plot area: maps [0, 1] x [0, 1] to pixels and draws the axes."""

    def __init__(self, size: float = 360, left: float = 56, top: float = 24, bottom: float = 48):
        self.size, self.left, self.top = size, left, top
        self.width, self.height = left + size + 24, top + size + bottom

    def x(self, value: float) -> float:
        return self.left + min(max(value, 0.0), 1.0) * self.size

    def y(self, value: float) -> float:
        return self.top + (1 - min(max(value, 0.0), 1.0)) * self.size

    def axes(self, x_label: str, y_label: str) -> str:
        """Grid, ticks every 0.2 and axis titles."""
        parts = []
        for k in range(6):
            v = k / 5
            parts.append(line(self.x(v), self.y(0), self.x(v), self.y(1), 'stroke="#eaeef2"'))
            parts.append(line(self.x(0), self.y(v), self.x(1), self.y(v), 'stroke="#eaeef2"'))
            parts.append(text(self.x(v), self.y(0) + 16, f"{v:.1f}", 11))
            parts.append(text(self.x(0) - 6, self.y(v) + 4, f"{v:.1f}", 11, "end"))
        parts.append(
            f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.size:.1f}" height="{self.size:.1f}" '
            f'fill="none" stroke="#57606a"/>\n'
        )
        parts.append(text(self.x(0.5), self.y(0) + 36, x_label, 12))
        mid = self.y(0.5)
        parts.append(text(16, mid, y_label, 12, extra=f' transform="rotate(-90 16 {mid:.1f})"'))
        return "".join(parts)


def reliability_svg(calibration: dict, y_label: str = "accuracy") -> str:
    """Accuracy (or another share) per score bin (bars over the bin, a dot at its mean score) against the diagonal."""
    frame = Frame()
    parts = [frame.axes("mean score in bin (confidence)", y_label)]
    for b in calibration["bins"]:
        if not b["count"]:
            continue
        x0, x1, y = frame.x(b["low"]), frame.x(b["high"]), frame.y(b["accuracy"])
        tip = (
            f"scores [{b['low']:.2f}, {b['high']:.2f}]: {b['count']} tasks, mean score {b['mean_score']:.3f}, "
            f"{y_label} {b['accuracy']:.3f}"
        )
        parts.append(
            f'<g><title>{esc(tip)}</title><rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{x1 - x0 - 2:.1f}" '
            f'height="{frame.y(0) - y:.1f}" fill="#9ecae1" fill-opacity="0.7" stroke="#3182bd"/>'
            f'<circle cx="{frame.x(b["mean_score"]):.1f}" cy="{y:.1f}" r="4" fill="#08519c"/></g>\n'
        )
        parts.append(text((x0 + x1) / 2, y - 6, f"n={b['count']}", 10, extra=' fill="#57606a"'))
    parts.append(
        line(
            frame.x(0), frame.y(0), frame.x(1), frame.y(1), 'stroke="#57606a" stroke-width="1.5" stroke-dasharray="5 4"'
        )
    )
    parts.append(
        text(frame.x(0) + 6, frame.top + 14, f"ECE {calibration['ece']:.3f}", 12, "start", ' font-weight="bold"')
    )
    return svg(frame.width, frame.height, f"Reliability diagram: {y_label} against mean score per bin", "".join(parts))


def coverage_svg(curve: list[dict], target: float, chosen: float | None, y_label: str = "accuracy") -> str:
    """Accuracy (or another share) against coverage as the score threshold falls, with the target and the
    recommended threshold."""
    frame = Frame()
    parts = [frame.axes("coverage (share of all tasks with score \u2265 threshold)", y_label)]
    parts.append(
        line(frame.x(0), frame.y(target), frame.x(1), frame.y(target), 'stroke="#cf222e" stroke-dasharray="6 4"')
    )
    parts.append(text(frame.x(1) - 4, frame.y(target) - 6, f"target {target:.2f}", 11, "end", ' fill="#cf222e"'))
    ordered = sorted(curve, key=lambda p: p["coverage"])
    if ordered:
        path = " ".join(f"{frame.x(p['coverage']):.1f},{frame.y(p['accuracy']):.1f}" for p in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0969da" stroke-width="2"/>\n')
    if len(ordered) <= 120:
        parts += [
            f'<circle cx="{frame.x(p["coverage"]):.1f}" cy="{frame.y(p["accuracy"]):.1f}" r="2.5" '
            f'fill="#0969da"><title>{esc(point_tip(p))}</title></circle>\n'
            for p in ordered
        ]
    for p in ordered:
        if p["threshold"] == chosen:
            x, y = frame.x(p["coverage"]), frame.y(p["accuracy"])
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="#cf222e" stroke-width="2">'
                f"<title>{esc('recommended: ' + point_tip(p))}</title></circle>\n"
            )
            left = x < frame.x(0.5)  # the label goes where the plot has room
            parts.append(
                text(
                    x + 8 if left else x - 8,
                    y + 18,
                    f"threshold {chosen:.3g}",
                    11,
                    "start" if left else "end",
                    ' fill="#cf222e"',
                )
            )
    return svg(frame.width, frame.height, f"{y_label.capitalize()} against coverage by score threshold", "".join(parts))


def point_tip(point: dict) -> str:
    """A coverage point in words."""
    return (
        f"score \u2265 {point['threshold']:.3g}: accuracy {point['accuracy']:.3f}, "
        f"coverage {100 * point['coverage']:.1f} %"
    )
