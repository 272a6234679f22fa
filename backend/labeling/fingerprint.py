"""One fingerprint of everything that shapes a prediction: model_version and the prediction-cache key come from it.

The inputs are the project's labeling spec (labels, control and object names: they end up in the written
regions), the effective PromptSettings (model, mode, template, instruction, selection, batch, calibration,
confidence samples, token limits, and whatever field is added to it later: every field is read, none is
listed by hand) and the demonstrations. model_version hashes all of them; the cache key hashes the same
settings and spec with the task's own request (its messages hold the demonstrations it was shown), so a
new annotation far from a task moves model_version but keeps that task's cached answer, while anything
that could change an answer or a written result moves both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any

from backend.labeling.prompt import PROMPT_FORMAT, PromptSettings, describe_scoring, instruction, stable_hash

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.labeling.spec import LabelingSpec

# Spec and control fields that do not shape answers or results: the raw XML (its layout and styling are
# not read; what is read is in the other fields).
_NOT_SHAPING = ("config",)


@dataclass(frozen=True)
class Fingerprint:
    """model_version for Label Studio and the cache key of any request, from one hash of the same inputs."""

    shape: str  # hash of the spec and the effective settings
    model_version: str  # "fsp-" + 12 hex digits: shape and demonstrations

    def cache_key(self, request: dict[str, Any]) -> str:
        """Content address of one task's LLM request under these settings: the prediction cache key."""
        return stable_hash({"format": PROMPT_FORMAT, "shape": self.shape, "request": request})


def fingerprint(spec: LabelingSpec, examples: Iterable[Example], prompt: PromptSettings) -> Fingerprint:
    shape = stable_hash(answer_shape(spec, prompt))
    demonstrations = [[e.text, list(e.labels)] + ([e.answer_json] if e.answer_json else []) for e in examples]
    version = stable_hash({"format": PROMPT_FORMAT, "shape": shape, "demonstrations": demonstrations})
    return Fingerprint(shape, "fsp-" + version[:12])


def answer_shape(spec: LabelingSpec, prompt: PromptSettings) -> dict[str, Any]:
    """Every input besides the demonstrations and the task's text, each as it takes effect.

    A setting that cannot matter where it is set (calibration outside logprobs mode and echo, alternatives
    that are not asked for, batches outside json mode) is reduced to its neutral value, so setting it does not
    re-label a project for nothing.
    """
    settings = _plain(prompt)
    mode = "json" if spec.structured else prompt.mode
    settings["mode"] = mode
    settings["selection"] = prompt.selection.describe()
    if mode != "json" or spec.structured:
        settings["batch"] = 1
    # How a score is made (method, alternatives asked for, calibration), each as it takes effect.
    scoring = describe_scoring(spec, prompt)
    settings["scoring"] = scoring
    settings["calibration"] = scoring["calibration"]
    settings["top_logprobs"] = scoring["top_logprobs"]
    settings["request_logprobs"] = bool(scoring["top_logprobs"])
    if not prompt.uses_embeddings:
        settings["embedding_model"] = ""
    return {
        "format": PROMPT_FORMAT,
        "settings": settings,
        "spec": _plain(spec),
        "instruction": instruction(spec, prompt),
    }


def _plain(value: Any) -> Any:
    """JSON-ready form of dataclasses (every field but the raw config), tuples and scalars."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name not in _NOT_SHAPING}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value
