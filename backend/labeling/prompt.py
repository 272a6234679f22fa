"""Prompts: demonstrations rendered with a template into chat messages, and stable hashes of what shapes an answer."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from backend.labeling.errors import BadTemplate
from backend.labeling.selection import SIMILARITY_STRATEGIES, TFIDF, Selection

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.labeling.spec import LabelingSpec

DEFAULT_TEMPLATE = "{text} [SEP] The label of the above text is {label}"
# The classic template asks for "the label"; an answer that lists entities, or fills several fields, reads
# better after a prompt that names it (the form NER prompting work uses: "Sentence: ... Entities: ...").
SPAN_TEMPLATE = "Text: {text}\nEntities: {label}"
STRUCTURED_TEMPLATE = "Text: {text}\nAnswer: {label}"
MODES = ("json", "logprobs", "text")
SCORINGS = ("answer", "echo")  # score from the answer's top_logprobs, or every label by echo (labeling/echo.py)
MULTI_SEPARATOR = "; "
# Bump when the message layout changes, so model versions and cache keys move with it.
PROMPT_FORMAT = 1
# Bump when the way a score is computed changes (labeling/probabilities.py, echo.py): cached scores and model
# versions made the old way move with it. 2: every label's mass at its position, all surface forms together.
SCORING_FORMAT = 2


@dataclass(frozen=True)
class PromptSettings:
    """Everything besides the demonstrations and the config that shapes a model's request and answer.

    labeling.fingerprint reads every field into model_version and the cache key: a setting that shapes
    answers belongs here, not read from the environment beside it.
    """

    model: str
    mode: str = "json"
    template: str = DEFAULT_TEMPLATE
    instruction: str = ""
    selection: Selection = Selection()
    batch: int = 1  # tasks per request (json mode only)
    # What nearest-k / mmr-k compare texts with: an embedding model (the bundled local one, "local:...", or one
    # of the LLM server's), or TF-IDF in-process ("tfidf" or empty).
    embedding_model: str = ""
    calibration: str = "none"  # "contextual": divide out the prompt's bias (logprobs mode, echo)
    scoring: str = "answer"  # "echo": every label scored exactly through /v1/completions (single choice)
    confidence_samples: int = 0  # extra answers sampled for an agreement score when there are no logprobs
    max_tokens: int = 256  # cap on tokens in one answer (and room kept for it in the context window)
    top_logprobs: int = 20  # alternatives per answer token asked for (answer scoring)
    request_logprobs: bool = True  # ask for logprobs in json/text mode too (a score)
    context_window: int = 0  # the model's window in tokens; 0: from the table of known models
    prompt_limit: int = 0  # cap on prompt tokens below the window; 0: none

    @property
    def uses_embeddings(self) -> bool:
        return self.embedding_model not in ("", TFIDF) and self.selection.strategy in SIMILARITY_STRATEGIES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"answer mode must be one of {list(MODES)}, got {self.mode!r}")
        if not 1 <= self.batch <= 64:
            raise ValueError(f"batch size must be between 1 and 64, got {self.batch!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {list(SCORINGS)}, got {self.scoring!r}")
        if self.mode == "logprobs" and self.scoring == "answer" and not 1 <= self.top_logprobs <= 20:
            raise ValueError(
                "logprobs mode reads the label's probability from the alternatives: it needs "
                f"LLM_TOP_LOGPROBS between 1 and 20 (the OpenAI limit), got {self.top_logprobs!r}"
            )
        if self.max_tokens < 1 or self.confidence_samples < 0 or self.context_window < 0 or self.prompt_limit < 0:
            raise ValueError(
                "max_tokens must be positive; confidence_samples, context_window and prompt_limit "
                f"0 or more, got {self.max_tokens!r}, {self.confidence_samples!r}, "
                f"{self.context_window!r}, {self.prompt_limit!r}"
            )
        check_template(self.template)


def for_config(settings: PromptSettings, spec: LabelingSpec) -> PromptSettings:
    """The prompt settings a config is labeled with: the classic default template becomes SPAN_TEMPLATE for
    configs whose only controls are span labels, STRUCTURED_TEMPLATE for the other structured configs; a
    template the admin chose (PROMPT_TEMPLATE, the project's "template") is kept as it is."""
    if settings.template != DEFAULT_TEMPLATE or not spec.structured:
        return settings
    spans_only = all(control.tag == "Labels" for control in spec.controls)
    return replace(settings, template=SPAN_TEMPLATE if spans_only else STRUCTURED_TEMPLATE)


def scoring_of(spec: LabelingSpec, settings: PromptSettings) -> str:
    """The scoring in effect: echo scores one label of a single-choice config; anything else is read from answers."""
    return "echo" if settings.scoring == "echo" and not spec.structured and not spec.multiple else "answer"


def describe_scoring(spec: LabelingSpec, settings: PromptSettings) -> dict[str, Any]:
    """What shapes a score besides the request: the scoring method, the alternatives read, calibration."""
    method = scoring_of(spec, settings)
    asked = method == "answer" and (settings.mode == "logprobs" or settings.request_logprobs)
    calibrated = settings.calibration if method == "echo" or settings.mode == "logprobs" else "none"
    return {
        "format": SCORING_FORMAT,
        "method": method,
        "top_logprobs": settings.top_logprobs if asked else 0,
        "calibration": "none" if spec.structured or spec.multiple else calibrated,
    }


def check_template(template: str) -> None:
    """BadTemplate unless the template holds {text} once and ends with {label}."""
    if template.count("{text}") != 1 or template.count("{label}") != 1:
        raise BadTemplate(f"the template needs {{text}} and {{label}} exactly once each, got {template!r}")
    if not template.rstrip().endswith("{label}"):
        raise BadTemplate(f"the template must end with {{label}} (the model continues from there), got {template!r}")


def render_query(template: str, text: str) -> str:
    """The template up to {label}, filled with a text: what the model completes."""
    prefix = template[: template.index("{label}")].rstrip()
    # str.replace, not str.format: task texts contain braces.
    return prefix.replace("{text}", text)


def render_demonstration(template: str, text: str, answer: str) -> str:
    """A whole demonstration in one string, the original algorithm's form."""
    return f"{render_query(template, text)} {answer}"


def demonstration_answer(spec: LabelingSpec, example: Example, mode: str) -> str:
    """What the assistant says for a demonstration: its labels in the mode's form, or its JSON answer."""
    if spec.structured:
        answer = example.answer
        # Each field in the form its schema describes (a single choice is a string, not a one-item list).
        shown = {c.name: c.to_answer(answer[c.name]) for c in spec.controls if c.name in answer}
        return json.dumps(shown, ensure_ascii=False)
    return answer_text(spec, example.labels, mode)


def answer_text(spec: LabelingSpec, labels: Iterable[str], mode: str) -> str:
    """How an assistant turn states labels in a given mode (demonstrations show the model the form)."""
    labels = list(labels)
    if mode == "json":
        payload = {"labels": labels} if spec.multiple else {"label": labels[0]}
        return json.dumps(payload, ensure_ascii=False)
    return MULTI_SEPARATOR.join(labels) if spec.multiple else labels[0]


def instruction(spec: LabelingSpec, settings: PromptSettings) -> str:
    """The system message: the task, the allowed labels with their hints, the answer form."""
    lines = []
    if settings.instruction:
        lines.append(settings.instruction.strip())
    if spec.structured:
        return "\n".join(lines + _structured_instruction(spec))
    lines.append(f"You label texts. For each text, choose the {spec.control_name!r} label(s) that fit it.")
    lines.append("Allowed labels: " + MULTI_SEPARATOR.join(spec.label_values))
    for label in spec.labels:
        described = [part for part in (label.name if label.name != label.value else "", label.hint) if part]
        if described:
            lines.append(f"- {label.value}: {' - '.join(described)}")
    lines.append(_answer_form(spec, settings.mode))
    return "\n".join(lines)


def _structured_instruction(spec: LabelingSpec) -> list[str]:
    fields = ", ".join(f'"{c.name}"' for c in spec.controls)
    lines = [
        "You annotate texts. For each text, answer a JSON object with one field per question: "
        f"{fields}. Leave a field out only when it does not apply."
    ]
    for control in spec.controls:
        lines.append(f'"{control.name}": {control.describe()}')
    return lines


def _answer_form(spec: LabelingSpec, mode: str) -> str:
    if mode == "json":
        if spec.multiple:
            return 'Answer with a JSON object {"labels": [...]} listing every allowed label that applies.'
        return 'Answer with a JSON object {"label": "..."} holding exactly one allowed label.'
    if spec.multiple:
        return f"Answer with every allowed label that applies, separated by {MULTI_SEPARATOR!r}, and nothing else."
    return "Answer with exactly one allowed label and nothing else."


def build_messages(
    spec: LabelingSpec, examples: Iterable[Example], text: str, settings: PromptSettings
) -> list[dict[str, Any]]:
    """Chat messages: instruction, one user/assistant pair per demonstration, then the query.

    The fixed part comes first and the task's text last so providers can reuse a cached prefix.
    """
    messages = [{"role": "system", "content": instruction(spec, settings)}]
    for example in examples:
        messages.append({"role": "user", "content": render_query(settings.template, example.text)})
        messages.append({"role": "assistant", "content": demonstration_answer(spec, example, settings.mode)})
    messages.append({"role": "user", "content": render_query(settings.template, text)})
    return messages


def build_batch_messages(
    spec: LabelingSpec, examples: Iterable[Example], texts: list[str], settings: PromptSettings
) -> list[dict[str, Any]]:
    """One request for several tasks: the same instruction and demonstrations, then numbered items.

    The model answers {"items": {"1": <answer>, "2": ...}}, each answer in the single-task JSON form.
    """
    messages = build_messages(spec, examples, texts[0], settings)
    messages[0] = {"role": "system", "content": messages[0]["content"] + "\n" + BATCH_FORM}
    messages[-1] = {
        "role": "user",
        "content": "\n".join(
            f"[item {n}]\n{render_query(settings.template, text)}" for n, text in enumerate(texts, start=1)
        ),
    }
    return messages


BATCH_FORM = (
    "When the text holds several items marked [item N], answer every item: a JSON object "
    '{"items": {"1": <answer for item 1>, "2": ...}} where each answer has the form above.'
)


def batch_schema(spec: LabelingSpec, count: int) -> dict[str, Any]:
    """The JSON schema of a batch answer: one single-task answer per item number."""
    item = json_schema(spec)
    numbers = [str(n) for n in range(1, count + 1)]
    return {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {
                "type": "object",
                "properties": {n: item for n in numbers},
                "required": numbers,
                "additionalProperties": False,
            }
        },
    }


def json_schema(spec: LabelingSpec) -> dict[str, Any]:
    """The JSON schema of a json-mode answer: the label field is an enum of the allowed labels."""
    if spec.structured:
        # Fields are optional: a control that does not apply is left out (strict mode would demand them all).
        return {
            "type": "object",
            "properties": {c.name: c.schema() for c in spec.controls},
            "additionalProperties": False,
        }
    enum = {"type": "string", "enum": list(spec.label_values)}
    properties: dict[str, Any]
    if spec.multiple:
        properties = {"labels": {"type": "array", "items": enum, "minItems": 1}}
    else:
        properties = {"label": enum}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def order_examples(examples: Iterable[Example]) -> list[Example]:
    """Deterministic demonstration order: seeds first, then annotations by task id; exact repeats dropped,
    and examples that teach nothing (no label, no value for any control): an empty answer is never shown."""
    seen, unique = set(), []
    for example in sorted(examples, key=_order_key):
        key = (example.text, example.labels, example.answer_json)
        if key not in seen and example.has_answer:
            seen.add(key)
            unique.append(example)
    return unique


def _order_key(example: Example) -> tuple[Any, ...]:
    natural = tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", example.ref))
    return (example.source != "seed", natural, example.text)


def stable_hash(payload: object) -> str:
    """sha256 of canonical JSON: the same inputs give the same hash in every process and release."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
