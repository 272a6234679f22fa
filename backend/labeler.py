"""Label one text or many: prompt, ask the model, parse and validate the answer into an Outcome."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator

from .labeling.answers import (InvalidAnswer, label_distribution, parse_json_answer, parse_text_answer,
                               span_confidence)
from .labeling.errors import MissingText
from .labeling.examples import Example
from .labeling.prompt import PromptSettings, build_messages, json_schema, model_version, order_examples
from .labeling.selection import Selector
from .labeling.spec import LabelingSpec
from .llm import LLMClient, LLMError
from .options import prompt_for
from .settings import Settings

@dataclass
class Outcome:
    """What labeling one text produced: labels and a score, or an error kind with its detail."""

    labels: tuple[str, ...] | None = None
    score: float | None = None
    error: str | None = None
    detail: str = ""
    answer: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_version: str = ""
    distribution: dict[str, float] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.labels is not None


class Labeler:
    """Labels texts for one labeling spec with one set of demonstrations."""

    def __init__(self, spec: LabelingSpec, examples: Iterable[Example], settings: Settings,
                 client: LLMClient, prompt: PromptSettings | None = None):
        self.spec = spec
        self.examples = order_examples(examples)
        self.settings = settings
        self.client = client
        self.prompt = prompt or prompt_for(settings, {})
        self.selector = Selector(self.examples, self.prompt.selection)
        self.model_version = model_version(spec, self.examples, self.prompt)

    def request(self, text: str) -> dict:
        """The chat request for one text: messages plus the answer mode's parameters."""
        demonstrations = self.selector.select(text)
        request = {"model": self.prompt.model,
                   "messages": build_messages(self.spec, demonstrations, text, self.prompt),
                   "max_tokens": self.settings.max_tokens}
        mode = self.prompt.mode
        if mode == "json":
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "labels", "strict": True, "schema": json_schema(self.spec)}}
        if mode == "logprobs" or self.settings.request_logprobs:
            request["logprobs"] = True
            if mode == "logprobs" and self.settings.top_logprobs:
                request["top_logprobs"] = self.settings.top_logprobs
        return request

    def label_text(self, text: str) -> Outcome:
        """Label one text; a bad answer is retried, then reported as data, never raised."""
        return self.ask(self.request(text))

    def ask(self, request: dict) -> Outcome:
        """Send a request built by `request` and read the answer into an Outcome."""
        outcome = Outcome(model_version=self.model_version)
        for _ in range(self.settings.answer_retries + 1):
            try:
                reply = self.client.chat(request)
            except LLMError as exc:
                outcome.error, outcome.detail = "llm_error", str(exc)
                return outcome
            outcome.requests += reply.attempts
            outcome.prompt_tokens += reply.prompt_tokens
            outcome.completion_tokens += reply.completion_tokens
            outcome.answer = reply.content[:500]
            try:
                self._read(reply.content, reply.tokens, outcome)
                outcome.error, outcome.detail = None, ""
                return outcome
            except InvalidAnswer as exc:
                outcome.error, outcome.detail = exc.kind, exc.detail
        return outcome

    def label_data(self, data) -> Outcome:
        """Label a task's data (the config's data key holds the text)."""
        try:
            text = self.spec.text_of(data)
        except MissingText as exc:
            return Outcome(error="no_text", detail=str(exc), model_version=self.model_version)
        return self.label_text(text)

    def _read(self, content: str, tokens, outcome: Outcome) -> None:
        mode = self.prompt.mode
        labels = parse_json_answer(content, self.spec) if mode == "json" else parse_text_answer(content, self.spec)
        outcome.labels = labels
        if mode == "logprobs" and not self.spec.multiple:
            outcome.distribution = label_distribution(tokens or [], self.spec)
            if outcome.distribution:
                best = max(outcome.distribution, key=outcome.distribution.get)
                outcome.labels, outcome.score = (best,), outcome.distribution[best]
                return
        outcome.score = span_confidence(tokens or [], content, list(labels))


def label_many(labeler: Labeler, items: Iterable[tuple[object, object]], concurrency: int
               ) -> Iterator[tuple[object, Outcome]]:
    """Label (key, data) pairs with at most `concurrency` requests in flight; yields as they finish.

    Items are submitted in a bounded window so a million-row input never sits in memory as futures.
    """
    items = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="label") as pool:
        pending: dict = {}
        while True:
            for key, data in islice(items, max(0, 2 * concurrency - len(pending))):
                pending[pool.submit(labeler.label_data, data)] = key
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
