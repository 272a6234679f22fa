"""Live quality (pure): each submitted annotation against the prediction its annotator saw, and the figures
over many such reviews.

A review record (JSON-ready, one per annotation) holds: task, annotation (id), model_version and score of the
prediction that was seen, accepted (the annotation kept that prediction as it was), at (when the annotation
was made, ISO), and per control {"gold": the annotation's value, "predicted": the prediction's value} in the
form `Control.from_result` reads (labeling/controls.py). The comparison is the evaluation's own
(evaluation/structured.compare_task and control_metrics.summarize), so live and offline figures mean the same.

"The prediction the annotator saw" is the one the annotation names as its `parent_prediction` (Label Studio
sets it when the annotator started from a prediction), else the newest prediction of this backend created
before the annotation was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backend.evaluation.control_metrics import share, summarize
from backend.evaluation.metrics import coverage_curve, expected_calibration_error, recommended_threshold, usable_score
from backend.evaluation.structured import compare_task, predicted_value
from backend.labeling.errors import LabelingError
from backend.labeling.examples import annotation_labels, normalize_labels, structured_answer

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec

OWN_VERSION_PREFIX = "fsp-"  # every model_version this backend stamps (labeling/fingerprint.py)
DEFAULT_TARGET = 0.95
BINS = 10


@dataclass(frozen=True)
class LiveControl:
    """What the comparison needs of a control: a single Choices config has no Control object of its own."""

    name: str
    tag: str
    label_values: tuple[str, ...] = ()
    multiple: bool = False


def controls_of(spec: LabelingSpec) -> list[LiveControl]:
    if not spec.structured:
        return [LiveControl(spec.control_name, "Choices", spec.label_values, spec.multiple)]
    return [LiveControl(c.name, c.tag, c.label_values, c.multiple) for c in spec.controls]


def is_own(prediction: dict) -> bool:
    return str(prediction.get("model_version") or "").startswith(OWN_VERSION_PREFIX)


def parse_time(value: Any) -> datetime | None:
    """Label Studio's ISO timestamps ("...Z" or with an offset); naive ones are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seen_prediction(annotation: dict, predictions: Iterable[dict]) -> dict | None:
    """The prediction of this backend the annotator saw, or None (none of ours, or they started from another)."""
    predictions = [p for p in predictions if isinstance(p, dict)]
    parent = annotation.get("parent_prediction")
    parent = parent.get("id") if isinstance(parent, dict) else parent
    if parent is not None:
        linked = next((p for p in predictions if p.get("id") == parent), None)
        if linked is not None:
            return linked if is_own(linked) else None
    made = parse_time(annotation.get("created_at"))
    before = [
        p for p in predictions if is_own(p) and (made is None or (parse_time(p.get("created_at")) or made) <= made)
    ]
    if not before:
        return None
    return max(
        before, key=lambda p: (parse_time(p.get("created_at")) or datetime.min.replace(tzinfo=UTC), p.get("id") or 0)
    )


def values_of(spec: LabelingSpec, result: Any, text: str) -> dict:
    """{control name: value} of an annotation's or a prediction's result; LabelingError when the config
    cannot hold it."""
    if spec.structured:
        return structured_answer(result if isinstance(result, list) else [], spec, text)
    raw = annotation_labels({"result": result if isinstance(result, list) else []}, spec)
    return {} if raw is None else {spec.control_name: list(normalize_labels(raw, spec, "result"))}


def review(spec: LabelingSpec, task: dict, annotation: dict, predictions: Iterable[dict]) -> tuple[dict | None, str]:
    """(record, "") for an annotation that reviews one of our predictions, else (None, why not)."""
    if annotation.get("was_cancelled"):
        return None, "cancelled"
    prediction = seen_prediction(annotation, predictions)
    if prediction is None:
        return None, "no_prediction"
    try:
        text = spec.text_of(task.get("data")) if spec.structured else ""
        gold = values_of(spec, annotation.get("result"), text)
    except LabelingError:
        return None, "invalid_value"
    if not gold:
        return None, "no_value"
    try:
        predicted = values_of(spec, prediction.get("result"), text)
    except LabelingError:
        predicted = {}  # the config changed since: nothing of it can have been kept
    controls = controls_of(spec)
    verdict = compare_task(controls, gold, predicted)
    # A value the annotator removed (a control the prediction filled and the annotation leaves empty) is a change.
    removed = any(c.name not in gold and predicted.get(c.name) not in (None, [], "") for c in controls)
    score = prediction.get("score")
    return {
        "task": task.get("id"),
        "annotation": annotation.get("id"),
        "model_version": prediction.get("model_version"),
        "prediction": prediction.get("id"),
        "score": float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
        "accepted": verdict["correct"] and not removed,
        "at": annotation.get("created_at"),
        "updated_at": annotation.get("updated_at"),
        "controls": {
            c.name: {"gold": gold[c.name], "predicted": predicted_value(c, predicted)}
            for c in controls
            if c.name in gold
        },
    }, ""


def reviews_from_tasks(
    spec: LabelingSpec, tasks: Iterable[dict], predictions: dict | None = None
) -> tuple[list[dict], Counter]:
    """Every review in these tasks ({id, data, annotations, predictions?}); `predictions` {task id: [..]}
    overrides a task's own list. The Counter counts annotations that review nothing, by reason."""
    records: list[dict] = []
    skipped: Counter[str] = Counter()
    for task in tasks:
        listed = (predictions or {}).get(task.get("id"), task.get("predictions") or [])
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict):
                continue
            record, reason = review(spec, task, annotation, listed)
            if record is None:
                skipped[reason] += 1
            else:
                records.append(record)
    return records, skipped


# ---- figures --------------------------------------------------------------------------------------------------


def figures(records: list[dict], controls: list[LiveControl], target: float = DEFAULT_TARGET, bins: int = BINS) -> dict:
    """The live figures as a JSON-ready dict (the README's "Live quality" says what each means):

    reviewed (annotations compared), tasks, accepted, accepted_share; by_model_version {version: {reviewed,
    accepted, accepted_share, mean_score, ece, first, last}} in the order the versions were first reviewed;
    controls {name: control_metrics.summarize of annotation (gold) against prediction}; calibration {ece,
    count, bins} of acceptance against score, or None; coverage [{threshold, coverage, accuracy}] where
    "accuracy" is the accepted share of the reviews with score >= threshold; recommended_threshold (the lowest
    whose accepted share reaches the target), its coverage and accepted share; scored; over_time [{day,
    reviewed, accepted, accepted_share}]."""
    records = sorted(records, key=lambda r: (str(r.get("at") or ""), str(r.get("annotation"))))
    accepted = [bool(r["accepted"]) for r in records]
    scored = [r for r in records if usable_score(r.get("score"))]
    curve = (
        coverage_curve([r["score"] for r in scored], [bool(r["accepted"]) for r in scored], len(records))
        if records
        else []
    )
    chosen = recommended_threshold(curve, target)
    point = next((p for p in curve if p["threshold"] == chosen), None)
    return {
        "reviewed": len(records),
        "tasks": len({r["task"] for r in records}),
        "accepted": sum(accepted),
        "accepted_share": share(sum(accepted), len(records)),
        "by_model_version": by_model_version(records, bins),
        "controls": control_figures(records, controls),
        "calibration": acceptance_calibration(scored, bins),
        "coverage": curve,
        "scored": len(scored),
        "target": target,
        "recommended_threshold": chosen,
        "recommended_coverage": point["coverage"] if point else None,
        "recommended_accepted_share": point["accuracy"] if point else None,
        "over_time": over_time(records),
    }


def acceptance_calibration(scored: list[dict], bins: int) -> dict | None:
    """Reliability of the score as a chance of acceptance: {ece, count, bins} (metrics' ECE), None unscored."""
    if not scored:
        return None
    ece, rows = expected_calibration_error([r["score"] for r in scored], [bool(r["accepted"]) for r in scored], bins)
    return {"ece": ece, "count": len(scored), "bins": rows}


def by_model_version(records: list[dict], bins: int = BINS) -> dict[str, dict]:
    groups: dict[str, list[dict]] = {}
    for record in records:  # sorted by time: versions come in the order they were first reviewed
        groups.setdefault(str(record.get("model_version")), []).append(record)
    table = {}
    for version, rows in groups.items():
        scores = [r["score"] for r in rows if usable_score(r.get("score"))]
        calibration = acceptance_calibration([r for r in rows if usable_score(r.get("score"))], bins)
        hits = sum(bool(r["accepted"]) for r in rows)
        table[version] = {
            "reviewed": len(rows),
            "accepted": hits,
            "accepted_share": share(hits, len(rows)),
            "mean_score": share(sum(scores), len(scores)),
            "ece": calibration["ece"] if calibration else None,
            "first": rows[0].get("at"),
            "last": rows[-1].get("at"),
        }
    return table


def control_figures(records: list[dict], controls: list[LiveControl]) -> dict[str, dict]:
    """Per control: the evaluation's summary with the annotation as gold and the seen prediction as predicted."""
    found = {}
    for control in controls:
        rows = [r["controls"][control.name] for r in records if control.name in r.get("controls", {})]
        if rows:
            found[control.name] = summarize(
                control.tag,
                list(control.label_values),
                [r["gold"] for r in rows],
                [r["predicted"] for r in rows],
                control.multiple,
            )
    return found


def over_time(records: list[dict]) -> list[dict]:
    """Reviews and acceptance per UTC day of the annotation."""
    days: dict[str, list[bool]] = {}
    for record in records:
        moment = parse_time(record.get("at"))
        day = moment.astimezone(UTC).date().isoformat() if moment else "unknown"
        days.setdefault(day, []).append(bool(record["accepted"]))
    return [
        {"day": day, "reviewed": len(hits), "accepted": sum(hits), "accepted_share": share(sum(hits), len(hits))}
        for day, hits in sorted(days.items())
    ]


def auto_threshold(found: dict, min_reviews: int) -> tuple[float | None, str]:
    """The threshold `"threshold": "auto"` applies, with the evidence (or why none is backed yet)."""
    scored, target = found["scored"], found["target"]
    if scored < min_reviews:
        return None, f"{scored} scored reviews, {min_reviews} needed (AUTO_THRESHOLD_MIN_REVIEWS)"
    chosen = found["recommended_threshold"]
    if chosen is None:
        return None, f"no score threshold reaches an accepted share of {target:g} over {scored} scored reviews"
    return chosen, (
        f"{scored} scored reviews: predictions with score >= {chosen:.4g} were accepted as-is "
        f"{found['recommended_accepted_share']:.3f} of the time (target {target:g}) and cover "
        f"{100 * found['recommended_coverage']:.1f} % of reviewed tasks"
    )


def summary(found: dict) -> dict:
    """The short form /status shows."""
    return {
        "reviewed": found["reviewed"],
        "accepted_share": found["accepted_share"],
        "by_model_version": {
            v: {"reviewed": row["reviewed"], "accepted_share": row["accepted_share"]}
            for v, row in found["by_model_version"].items()
        },
        "ece": (found["calibration"] or {}).get("ece"),
        "recommended_threshold": found["recommended_threshold"],
        "target": found["target"],
    }
