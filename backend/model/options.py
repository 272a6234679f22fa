"""Per-project options: the JSON an admin types as the model's "extra params" in Label Studio, validated."""

from __future__ import annotations

import json

from backend.labeling.errors import BadTemplate
from backend.labeling.prompt import MODES, SCORINGS, PromptSettings, check_template
from backend.labeling.selection import STRATEGIES, TFIDF, Selection
from backend.model.embeddings import similarity_model
from backend.settings import CALIBRATIONS, LOW_SCORE_ACTIONS, Settings

AUTO = "auto"  # "threshold": "auto" follows the live quality figures (quality.py)

# option name -> (type, what it means); the environment gives every default.
OPTIONS = {
    "model": (str, "model name (LLM_MODEL)"),
    "mode": (str, f"answer mode, one of {list(MODES)} (LLM_ANSWER_MODE)"),
    "instruction": (str, "task instruction placed first in the system message (PROMPT_INSTRUCTION)"),
    "template": (str, "demonstration template with {text} and ending in {label} (PROMPT_TEMPLATE)"),
    "selection": (str, f"demonstration selection, one of {list(STRATEGIES)} (DEMO_SELECTION)"),
    "k": (int, "k of first-k, balanced-k, nearest-k and mmr-k, and of auto when it picks nearest-k (DEMO_K)"),
    "calibration": (str, "none or contextual, logprobs mode and echo scoring (CALIBRATION)"),
    "scoring": (str, f"how scores are computed, one of {list(SCORINGS)} (LLM_SCORING)"),
    "threshold": (
        float,
        "score below which no pre-annotation is written, or it is flagged (SCORE_THRESHOLD); "
        '"auto": the live quality\'s recommendation once AUTO_THRESHOLD_MIN_REVIEWS reviews back it',
    ),
    "low_score": (str, "skip or flag: what happens below the threshold (LOW_SCORE_ACTION)"),
    "batch": (int, "tasks answered by one request, json mode only (BATCH_SIZE)"),
}


class BadOptions(ValueError):
    """Project options that cannot be used; the message names the option and what it accepts."""


def parse_options(raw, settings: Settings) -> dict:
    """Validate extra_params (a dict or a JSON string; empty means no overrides) against the environment
    they will be combined with (mmr-k is fine where EMBEDDING_MODEL is set, and only there)."""
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadOptions(f"extra params must be a JSON object, got {raw[:80]!r} ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise BadOptions(f"extra params must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(OPTIONS))
    if unknown:
        raise BadOptions(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(OPTIONS))}")
    for name, value in raw.items():
        kind, meaning = OPTIONS[name]
        if name == "threshold" and value == AUTO:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            also = ' or "auto"' if name == "threshold" else ""
            raise BadOptions(f"option {name!r} must be a {kind.__name__}{also} ({meaning}), got {value!r}")
    options = dict(raw)
    if options.get("calibration", "none") not in CALIBRATIONS:
        raise BadOptions(f"option 'calibration' must be one of {list(CALIBRATIONS)}, got {options['calibration']!r}")
    if options.get("low_score", "skip") not in LOW_SCORE_ACTIONS:
        raise BadOptions(f"option 'low_score' must be one of {list(LOW_SCORE_ACTIONS)}, got {options['low_score']!r}")
    if options.get("threshold") != AUTO and not 0.0 <= float(options.get("threshold", 0.0)) <= 1.0:
        raise BadOptions(f"option 'threshold' must be between 0 and 1, got {options['threshold']!r}")
    prompt_for(settings, options)  # raises BadOptions on bad values
    return options


def prompt_for(settings: Settings, options: dict) -> PromptSettings:
    """The prompt settings of a project: the environment, overridden by the project's options."""
    try:
        selection = Selection(options.get("selection", settings.selection), options.get("k", settings.selection_k))
        embedding_model = similarity_model(settings.embedding_model)
        if selection.strategy == "mmr-k" and embedding_model == TFIDF:
            raise ValueError(
                "selection mmr-k needs embedding vectors, and EMBEDDING_MODEL is tfidf: leave it "
                "empty (the local model) or name an embedding model"
            )
        template = options.get("template", settings.template)
        check_template(template)
        return PromptSettings(
            model=options.get("model", settings.model),
            mode=options.get("mode", settings.answer_mode),
            template=template,
            instruction=options.get("instruction", settings.instruction),
            selection=selection,
            batch=options.get("batch", settings.batch_size),
            embedding_model=embedding_model,
            calibration=options.get("calibration", settings.calibration),
            scoring=options.get("scoring", settings.scoring),
            confidence_samples=settings.confidence_samples,
            max_tokens=settings.max_tokens,
            top_logprobs=settings.top_logprobs,
            request_logprobs=settings.request_logprobs,
            context_window=settings.context_window,
            prompt_limit=settings.prompt_limit,
        )
    except (ValueError, BadTemplate) as exc:
        raise BadOptions(str(exc)) from exc
