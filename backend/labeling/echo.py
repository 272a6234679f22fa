"""Exact scoring by echo: the classic prompt as text with each label appended, P(label | prompt) read from the
server's log-probabilities of the prompt's own tokens (/v1/completions with echo and logprobs).

The prompt is the algorithm's own form: the instruction, then each demonstration as
"{x} [SEP] The label of the above text is {y}", then the query, separated by blank lines. Each label is scored
as it would continue the query, " {label}" and the blank line that ends an answer in the demonstrations, so a
label that is a prefix of another ("Sci" / "Sci/Tech") is scored up to its end. A label's probability is the
sum over its forms (its value as written, lowercase, capitalized), renormalized over the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.labeling.matching import Label
    from backend.labeling.spec import LabelingSpec

SEPARATOR = "\n\n"
MAX_TOKENS = 1  # vLLM refuses 0; the one generated token is not read


class EchoUnusable(Exception):
    """The server's reply holds no log-probabilities of the prompt's tokens (it does not support echo)."""


@dataclass(frozen=True)
class EchoChoice:
    """One scored prompt as the server echoed it: its text, and its tokens' texts and log-probabilities."""

    text: str
    tokens: tuple[str, ...]
    token_logprobs: tuple[float | None, ...]


def echo_forms(label: Label) -> tuple[str, ...]:
    """The spellings echo scores for a label: its value as written, lowercase and capitalized (the prompt shows
    the values; each spelling is one more prompt to score)."""
    value = label.value
    return tuple(dict.fromkeys((value, value.lower(), value[:1].upper() + value[1:])))


def continuations(spec: LabelingSpec) -> list[tuple[str, str]]:
    """(label value, continuation) for every form. A label's value as written is its own; another spelling two
    labels share ("us" for the labels "us" and "US") names neither and is left out."""
    owners: dict[str, set[str]] = {}
    for label in spec.labels:
        for form in echo_forms(label):
            owners.setdefault(form, set()).add(label.value)
    return [
        (label.value, f" {form}{SEPARATOR}")
        for label in spec.labels
        for form in echo_forms(label)
        if form == label.value or (owners[form] == {label.value} and form not in spec.label_values)
    ]


def echo_prompt(messages: list[dict[str, Any]]) -> str:
    """The chat prompt as one text: system, then each demonstration as query and answer, then the query."""
    blocks, rest = [], list(messages)
    if rest and rest[0]["role"] == "system":
        blocks.append(rest.pop(0)["content"])
    query = rest.pop()["content"] if rest else ""
    for user, assistant in zip(rest[::2], rest[1::2]):
        blocks.append(f"{user['content']} {assistant['content']}")
    blocks.append(query)
    return SEPARATOR.join(blocks)


def echo_request(messages: list[dict[str, Any]], spec: LabelingSpec, model: str) -> dict[str, Any]:
    """One /v1/completions request scoring every label's forms as continuations of the prompt."""
    prompt = echo_prompt(messages)
    return {
        "model": model,
        "prompt": [prompt + text for _, text in continuations(spec)],
        "echo": True,
        "logprobs": 1,
        "max_tokens": MAX_TOKENS,
    }


def echo_distribution(request: dict[str, Any], choices: list[EchoChoice], spec: LabelingSpec) -> dict[str, float]:
    """P(label | prompt) over the label set from the echoed log-probabilities; EchoUnusable when there are none."""
    forms = continuations(spec)
    if len(choices) != len(forms) or len(request["prompt"]) != len(forms):
        raise EchoUnusable(f"{len(choices)} choices came back for {len(forms)} prompts")
    mass: dict[str, float] = {label.value: 0.0 for label in spec.labels}
    for (label, text), prompt, choice in zip(forms, request["prompt"], choices):
        mass[label] += math.exp(continuation_logprob(prompt, len(prompt) - len(text), choice))
    total = sum(mass.values())
    if total <= 0:
        raise EchoUnusable("every label has probability 0")
    return {label: value / total for label, value in mass.items()}


def continuation_logprob(prompt: str, start: int, choice: EchoChoice) -> float:
    """log P(prompt[start:] | prompt[:start]): the sum over the echoed tokens that spell the end of the prompt.

    The tokens are counted back from the end of the prompt, not located by text_offset: a server's offsets can
    drift (a beginning-of-sequence token, characters split over tokens) while its token texts spell the text.
    A token that straddles `start` counts whole.
    """
    tokens, logprobs = choice.tokens, choice.token_logprobs
    if not choice.text.startswith(prompt) or not tokens or len(tokens) != len(logprobs):
        raise EchoUnusable("the reply does not echo the prompt with its tokens")
    end, generated = len(tokens), choice.text[len(prompt) :]
    tail = ""
    while end > 0 and (len(tail) < len(generated) or (not generated and tokens[end - 1] == "")):
        end -= 1  # the generated tokens (the end of the answer may be an empty token)
        tail = tokens[end] + tail
    total, spelled, position = 0.0, "", end
    while position > 0 and len(spelled) < len(prompt) - start:
        position -= 1
        logprob = logprobs[position]
        if logprob is None:
            raise EchoUnusable("the echoed tokens carry no log-probabilities")
        total, spelled = total + logprob, tokens[position] + spelled
    if len(spelled) < len(prompt) - start or not prompt.endswith(spelled):
        raise EchoUnusable("the echoed tokens do not spell the prompt")
    return total
