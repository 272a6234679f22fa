"""The live quality figures (evaluation/live.py) as text lines for the terminal and as a self-contained HTML
page with inline SVG plots, built from the evaluate report's blocks and plots."""

from __future__ import annotations

from backend.evaluation.control_metrics import headline
from backend.evaluation.report import (
    DASH,
    calibration_table,
    coverage_svg,
    fmt,
    fmt_pct,
    point_at,
    reliability_svg,
    to_html,
)
from backend.evaluation.report_structured import control_blocks

ACCEPTED = "accepted share"


def title(project_id: int) -> str:
    return f"Live quality of project {project_id}"


def lines(project_id: int, found: dict) -> list[str]:
    """A few lines: the headline, each model_version, each control, calibration and the threshold."""
    out = [
        f"project {project_id}: {found['reviewed']} reviewed ({found['tasks']} tasks), {found['accepted']} "
        f"accepted as-is ({fmt(found['accepted_share'])})"
    ]
    for version, row in found["by_model_version"].items():
        out.append(
            f"  {version}: {row['reviewed']} reviewed, accepted {fmt(row['accepted_share'])}, "
            f"mean score {fmt(row['mean_score'])}"
        )
    for name, summary in found["controls"].items():
        figure, value = headline(summary)
        out.append(f"  {name} ({summary['tag']}): exactly kept {fmt(summary['exact_match'])}, {figure} {fmt(value)}")
    calibration = found.get("calibration")
    if calibration:
        out.append(
            f"  ECE of the score as a chance of acceptance: {fmt(calibration['ece'])} ({calibration['count']} scored)"
        )
    out.append("  " + recommendation(found))
    return out


def recommendation(found: dict) -> str:
    target, chosen = found["target"], found["recommended_threshold"]
    if not found["scored"]:
        return "no reviewed prediction has a score: no threshold can be recommended"
    if chosen is None:
        return f"no score threshold reaches an accepted share of {fmt(target)}"
    return (
        f"recommended threshold {fmt(chosen)}: predictions scoring at least this were accepted as-is "
        f"{fmt(found['recommended_accepted_share'])} of the time (target {fmt(target)}) and cover "
        f"{fmt_pct(found['recommended_coverage'])} of the reviewed tasks"
    )


def blocks(project_id: int, found: dict, applied: dict | None = None) -> list[tuple]:
    """The page, format-neutral (report.py's block kinds)."""
    out = [
        ("h1", title(project_id)),
        (
            "p",
            "Every annotation submitted on a task this backend pre-labeled is compared with the prediction "
            "its annotator saw. Accepted = the annotation kept that prediction exactly as it was.",
        ),
        (
            "table",
            ["figure", "value"],
            [
                ["reviewed annotations", str(found["reviewed"])],
                ["reviewed tasks", str(found["tasks"])],
                ["accepted as-is", str(found["accepted"])],
                [ACCEPTED, fmt(found["accepted_share"])],
                ["ECE (score against acceptance)", fmt((found.get("calibration") or {}).get("ece"))],
                [
                    f"recommended threshold ({ACCEPTED} \u2265 {fmt(found['target'])})",
                    fmt(found["recommended_threshold"]),
                ],
                ["threshold auto applies", _applied(applied)],
            ],
        ),
        ("h2", "Per model_version"),
        (
            "table",
            ["model_version", "reviewed", "accepted", ACCEPTED, "mean score", "ECE", "first", "last"],
            [
                [
                    v,
                    str(r["reviewed"]),
                    str(r["accepted"]),
                    fmt(r["accepted_share"]),
                    fmt(r["mean_score"]),
                    fmt(r["ece"]),
                    str(r["first"] or DASH),
                    str(r["last"] or DASH),
                ]
                for v, r in found["by_model_version"].items()
            ],
        ),
    ]
    for name, summary in found["controls"].items():
        out += control_blocks(name, summary)
    out += calibration_blocks(found)
    out += [
        ("h2", "Acceptance over time"),
        (
            "table",
            ["day (UTC)", "reviewed", "accepted", ACCEPTED],
            [[d["day"], str(d["reviewed"]), str(d["accepted"]), fmt(d["accepted_share"])] for d in found["over_time"]],
        ),
    ]
    return out


def calibration_blocks(found: dict) -> list[tuple]:
    calibration = found.get("calibration")
    if calibration is None:
        return [("h2", "Reliability and threshold"), ("p", recommendation(found))]
    header, rows = calibration_table(calibration)
    grid = sorted(
        {
            0.5,
            0.7,
            0.8,
            0.9,
            0.95,
            *([found["recommended_threshold"]] if found["recommended_threshold"] is not None else []),
        }
    )
    points = [(t, point_at(found["coverage"], t)) for t in grid]
    return [
        ("h2", "Reliability curve"),
        (
            "p",
            f"Each bar is the share of reviewed predictions accepted as-is among those whose score fell in the "
            f"bin; on the dashed diagonal the score is exactly the chance of acceptance. ECE = "
            f"{fmt(calibration['ece'])} over {calibration['count']} scored reviews.",
        ),
        ("table", [*header[:3], ACCEPTED, f"|{ACCEPTED} - score|"], rows),
        ("svg", reliability_svg(calibration, ACCEPTED)),
        ("h2", "Score threshold"),
        ("p", recommendation(found) + "."),
        (
            "table",
            ["score", "coverage (share of reviewed tasks)", ACCEPTED],
            [
                [f"\u2265 {t:.3g}", fmt_pct(p["coverage"] if p else 0.0), fmt(p["accuracy"] if p else None)]
                for t, p in points
            ],
        ),
        ("svg", coverage_svg(found["coverage"], found["target"], found["recommended_threshold"], ACCEPTED)),
    ]


def _applied(applied: dict | None) -> str:
    if not applied:
        return DASH
    threshold = applied.get("threshold")
    return (fmt(threshold) if threshold is not None else "not yet (SCORE_THRESHOLD)") + f": {applied['evidence']}"


def html(project_id: int, found: dict, applied: dict | None = None) -> str:
    return to_html(blocks(project_id, found, applied), title(project_id))
