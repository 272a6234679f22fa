"""The `quality` command: the live quality figures of a project computed from Label Studio directly (no
webhook, no Redis needed), and the threshold they back for `export --min-score auto`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from backend.evaluation.live import auto_threshold, controls_of, figures
from backend.evaluation.quality_report import lines
from backend.labeling.errors import LabelingError
from backend.labeling.parser import parse_spec
from backend.pipeline.quality import read_reviews

if TYPE_CHECKING:
    from backend.settings import Settings


class QualityError(LabelingError):
    """The figures cannot be computed as asked; the message says what to change."""


def project_figures(settings: Settings, project_id: int, target: float | None = None) -> dict:
    """The figures of a Label Studio project (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)."""
    from backend.studio.client import StudioError, studio_from

    try:
        with studio_from(settings.studio_url, settings.studio_api_key) as studio:
            spec = parse_spec(studio.project(project_id).get("label_config") or "")
            found, skipped = read_reviews(studio, spec, project_id)
    except StudioError as exc:
        raise QualityError(str(exc)) from None
    result = figures(found, controls_of(spec), settings.quality_target if target is None else target)
    result["not_reviews"] = skipped  # annotations without a prediction of ours, cancelled ones, ...
    return result


def backed_threshold(settings: Settings, project_id: int) -> tuple[float, str]:
    """The threshold the live figures back for QUALITY_TARGET; QualityError while they back none."""
    threshold, evidence = auto_threshold(project_figures(settings, project_id), settings.auto_threshold_min_reviews)
    if threshold is None:
        raise QualityError(
            f"--min-score auto: the live figures of project {project_id} back no threshold yet "
            f"({evidence}); pass a number instead, or lower QUALITY_TARGET"
        )
    return threshold, evidence


def run_quality(settings: Settings, project_id: int, as_json: bool, target: float | None = None) -> int:
    if target is not None and not 0 < target <= 1:
        raise QualityError(f"--target must be above 0 and at most 1, got {target}")
    found = project_figures(settings, project_id, target)
    if as_json:
        print(json.dumps({"project_id": project_id, **found}, indent=2))
        return 0
    for line in lines(project_id, found):
        print(line)
    if found["not_reviews"]:
        print(
            "  annotations that review no prediction of this backend: "
            + ", ".join(f"{k} {v}" for k, v in sorted(found["not_reviews"].items())),
            file=sys.stderr,
        )
    return 0
