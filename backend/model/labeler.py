"""Label one text or many: prompt, ask the model, parse and validate the answer into an Outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from backend.labeling.answers import parse_batch_answer, parse_json_answer, parse_structured_answer, parse_text_answer
from backend.labeling.auto_selection import choose_selection
from backend.labeling.budget import TRUNCATION_MARKER, Budget, BudgetExceeded, Fitted, TokenCounter, context_window, fit
from backend.labeling.calibration import CONTENT_FREE, agreement, average, calibrate
from backend.labeling.echo import EchoUnusable, echo_distribution, echo_request
from backend.labeling.errors import InvalidAnswer, MissingText
from backend.labeling.fingerprint import fingerprint
from backend.labeling.probabilities import Scored, score_answer
from backend.labeling.prompt import (
    PromptSettings,
    batch_schema,
    build_batch_messages,
    build_messages,
    describe_scoring,
    for_config,
    json_schema,
    order_examples,
    render_query,
    scoring_of,
    stable_hash,
)
from backend.labeling.selection import Selector
from backend.model.embeddings import Embedder, EmbeddingSelector, MissingEmbeddings, embedder_for, process_vectors
from backend.model.errors import LLMError
from backend.model.options import prompt_for
from backend.model.spend import BudgetReached, SpendGuard

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.labeling.spec import LabelingSpec
    from backend.model.client import LLMClient
    from backend.settings import Settings

log = logging.getLogger(__name__)

K = TypeVar("K")  # the caller's key of an item (label_many hands it back with the item's Outcome)


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
    cached: bool = False
    values: dict | None = None  # structured configs: {control name: checked value}
    notes: dict | None = None  # structured configs: what checking dropped, per control
    truncated_chars: int = 0  # characters cut from the task text to fit the token budget
    dropped: int = 0  # demonstrations left out to fit the token budget
    demonstrations: tuple[str, ...] = ()  # refs (task ids, file:line) of the demonstrations in its prompt
    distribution: dict[str, float] | None = field(default=None, repr=False)
    unattributed: float = 0.0  # probability mass the answer's alternatives could not attribute to one label

    @property
    def ok(self) -> bool:
        return self.labels is not None


@dataclass(frozen=True)
class PreparedCall:
    """The model call for one text, built once (fitted to the token budget): the body sent to the model, its
    prediction-cache key, and what fitting left out. The web process builds it to look the cache up and hands
    it to the worker with the task, so that a task's prompt is built once on the way to the model."""

    body: dict  # the chat (or, for echo scoring, completions) request body
    cache_key: str
    model_version: str  # the labeler it was built by: a worker of another version builds its own
    messages: list[dict]  # the fitted chat messages (echo scoring builds its probes from them)
    truncated_chars: int = 0
    dropped: int = 0
    demonstrations: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = {
            "body": self.body,
            "cache_key": self.cache_key,
            "model_version": self.model_version,
            "truncated_chars": self.truncated_chars,
            "dropped": self.dropped,
            "demonstrations": list(self.demonstrations),
        }
        if self.body.get("messages") != self.messages:  # sent once when the body carries them
            data["messages"] = self.messages
        return data

    @classmethod
    def from_json(cls, data: dict) -> PreparedCall:
        body = data["body"]
        return cls(
            body,
            data["cache_key"],
            data["model_version"],
            data.get("messages", body.get("messages")),
            int(data.get("truncated_chars", 0)),
            int(data.get("dropped", 0)),
            tuple(data.get("demonstrations", ())),
        )


class Labeler:
    """Labels texts for one labeling spec with one set of demonstrations."""

    def __init__(
        self,
        spec: LabelingSpec,
        examples: Iterable[Example],
        settings: Settings,
        client: LLMClient | None,
        prompt: PromptSettings | None = None,
        embedder: Embedder | None = None,
        guard: SpendGuard | None = None,
    ):
        self.spec = spec
        self.examples = order_examples(examples)
        self.settings = settings
        self.client = client
        prompt = for_config(prompt or prompt_for(settings, {}), spec)
        if scoring_of(spec, prompt) == "echo":
            # Echo reads no answer: the demonstrations show plain labels, one task per request.
            prompt = replace(prompt, mode="logprobs", batch=1)
        elif prompt.scoring == "echo":
            log.info("echo scoring covers single-choice configs; this config's scores come from its answers")
        self.echo = scoring_of(spec, prompt) == "echo"
        self.scoring = describe_scoring(spec, prompt)  # how a score is made (part of the fingerprint)
        self.counter = TokenCounter(prompt.model)
        self.budget = Budget(
            prompt.context_window or context_window(prompt.model), prompt.max_tokens, prompt.prompt_limit
        )
        # "auto" becomes a concrete selection for these demonstrations; the prompt settings, and so the
        # model_version, carry the selection in effect and the similarity model it uses.
        self.choice = choose_selection(spec, self.examples, prompt, self.counter, self.budget)
        if self.choice.setting == "auto":
            log.info("selection auto: %s", self.choice.reason)
        self.prompt = replace(prompt, selection=self.choice.selection)
        # model_version and every cache key of this labeler come from one fingerprint of the same inputs.
        self.fingerprint = fingerprint(spec, self.examples, self.prompt)
        self.model_version = self.fingerprint.model_version
        if self.prompt.uses_embeddings and embedder is None:
            embedder = embedder_for(self.prompt.embedding_model, client, process_vectors())
        self.embedder = embedder if self.prompt.uses_embeddings else None
        self.selector = self._selector()
        self.guard = guard
        self._lock = threading.Lock()
        self._content_free_cache: dict[str, dict | None] = {}
        self._content_free_locks: dict[str, threading.Lock] = {}
        self._echo_refused = ""  # why the server cannot score by echo, once it said so
        self._echo_ok = False  # the server answered one echo request with prompt log-probabilities
        self._echo_first = threading.Lock()

    def _selector(self):
        if self.embedder is None:
            return Selector(self.examples, self.prompt.selection)
        texts = [e.text for e in self.examples]
        # Only a process with an embedding source embeds; the web process reads vectors the workers cached.
        vectors = self.embedder.vectors(texts) if self.embedder.embeds else self.embedder.cached(texts)
        if any(v is None for v in vectors):
            return None
        return EmbeddingSelector(self.examples, self.prompt.selection.k, vectors, self.prompt.selection.strategy)

    @property
    def ready(self) -> bool:
        """False in a process without a client while the demonstrations' embeddings are not cached yet."""
        return self.selector is not None

    def query_vectors(self, texts: list[str]) -> list:
        """Embedding vectors of query texts (batched, cached), None each when selection needs none or, in a
        process that does not embed, where none is cached."""
        if self.embedder is None or not texts:
            return [None] * len(texts)
        return self.embedder.vectors(texts) if self.embedder.embeds else self.embedder.cached(texts)

    def _demonstrations(self, text: str, vector) -> list[Example]:
        if self.selector is None or (self.embedder is not None and vector is None):
            raise MissingEmbeddings(1, self.prompt.embedding_model)
        return self.selector.select(text, vector)

    def prepare(self, text: str, vector=None) -> PreparedCall:
        """The model call for one text, fitted to the token budget; raises BudgetExceeded when it cannot fit."""
        build = partial(_build_single, self.spec, self.prompt)
        fitted = fit(
            self._demonstrations(text, vector), text, build, self.counter, self.budget, self.prompt.selection.strategy
        )
        if self.echo:
            body = echo_request(fitted.messages, self.spec, self.prompt.model)
        else:
            body = {"model": self.prompt.model, "messages": fitted.messages, "max_tokens": self.prompt.max_tokens}
            if self.mode == "json":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "labels",
                        "strict": not self.spec.structured,
                        "schema": json_schema(self.spec),
                    },
                }
            self._ask_logprobs(body)
        return PreparedCall(
            body,
            self.fingerprint.cache_key(body),
            self.model_version,
            fitted.messages,
            fitted.truncated_chars,
            fitted.dropped,
            tuple(e.ref for e in fitted.demonstrations),
        )

    def _ask_logprobs(self, request: dict) -> None:
        # The alternatives at the label's position are what the score is read from, in every answer mode.
        if self.mode == "logprobs" or self.prompt.request_logprobs:
            request["logprobs"] = True
            if self.prompt.top_logprobs:
                request["top_logprobs"] = self.prompt.top_logprobs

    def chat_request(self, text: str, vector=None) -> dict:
        """The body of the model call for one text: messages plus the answer mode's parameters."""
        return self.prepare(text, vector).body

    def cache_key(self, text: str, vector=None) -> str:
        """The prediction-cache key of one text: its call body under this labeler's fingerprint."""
        return self.prepare(text, vector).cache_key

    def _client(self) -> LLMClient:
        if self.client is None:  # a labeler built without one only makes prompts and cache keys
            raise RuntimeError("this Labeler has no LLM client to call")
        return self.client

    def _chat(self, request: dict):
        """Every model call goes through here: the project's spend limit first, its cost recorded after."""
        if self.guard is not None:
            self.guard.check()
        reply = self._client().chat(request)
        if self.guard is not None:
            self.guard.record(reply.prompt_tokens, reply.completion_tokens)
        return reply

    def label_text(self, text: str, vector=None) -> Outcome:
        """Label one text; a bad answer is retried, then reported as data, never raised."""
        try:
            call = self.prepare(text, vector)
        except BudgetExceeded as exc:
            return Outcome(error="too_long", detail=str(exc), model_version=self.model_version)
        return self.ask_prepared(call, text)

    def ask_prepared(self, call: PreparedCall, text: str) -> Outcome:
        """Make a call `prepare` built (here or in another process) and read its answer."""
        outcome = self.ask_echo(call.body, call.messages) if self.echo else self.ask(call.body, text)
        outcome.truncated_chars, outcome.dropped = call.truncated_chars, call.dropped
        outcome.demonstrations = call.demonstrations
        return outcome

    def ask(self, request: dict, text: str = "") -> Outcome:
        """Send a request built by `request` and read the answer into an Outcome."""
        outcome = Outcome(model_version=self.model_version)
        for _ in range(self.settings.answer_retries + 1):
            try:
                reply = self._chat(request)
            except LLMError as exc:
                outcome.error, outcome.detail = "llm_error", str(exc)
                return outcome
            except BudgetReached as exc:
                outcome.error, outcome.detail = "budget", str(exc)
                return outcome
            _add_usage(outcome, reply)
            outcome.answer = reply.content[:500]
            try:
                self._read(reply.content, reply.tokens, outcome, request, text)
                outcome.error, outcome.detail = None, ""
                if outcome.score is None and self.prompt.confidence_samples:
                    outcome.score = self._agreement(request, outcome)
                return outcome
            except InvalidAnswer as exc:
                outcome.error, outcome.detail = exc.kind, exc.detail
        return outcome

    @property
    def mode(self) -> str:
        """The answer mode in effect: configs with several controls (or spans, text...) always answer JSON."""
        return "json" if self.spec.structured else self.prompt.mode

    @property
    def batch_size(self) -> int:
        """Tasks per request: batches need JSON answers keyed by item, so other modes ask one at a time."""
        return self.prompt.batch if self.mode == "json" and not self.spec.structured else 1

    def batch_request(self, texts: list[str], vectors: list | None = None) -> dict:
        """One request for several texts: their demonstrations merged (each once), then the numbered items."""
        return self.prepare_batch(texts, vectors)[0]

    def prepare_batch(self, texts: list[str], vectors: list | None = None) -> tuple[dict, Fitted]:
        """batch_request, and what fitting it to the token budget kept and left out."""
        vectors = vectors or [None] * len(texts)
        share = int(self.budget.prompt_tokens * self.budget.max_text_share / len(texts))
        texts = [self._cut(text, share) for text in texts]
        demonstrations = list(dict.fromkeys(e for t, v in zip(texts, vectors) for e in self._demonstrations(t, v)))
        build = partial(_build_batch, self.spec, self.prompt, texts)
        fitted = fit(demonstrations, "", build, self.counter, self.budget, self.prompt.selection.strategy)
        request = {
            "model": self.prompt.model,
            "messages": fitted.messages,
            "max_tokens": self.prompt.max_tokens * len(texts),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "batch", "strict": True, "schema": batch_schema(self.spec, len(texts))},
            },
        }
        self._ask_logprobs(request)
        return request, fitted

    def _cut(self, text: str, max_tokens: int) -> str:
        if self.counter.text(text) <= max_tokens:
            return text
        kept = self.counter.truncate(text, max_tokens)
        return kept + TRUNCATION_MARKER.format(n=len(text) - len(kept))

    def ask_batch(
        self, texts: list[str], vectors: list | None = None, calls: list[PreparedCall | None] | None = None
    ) -> list[Outcome]:
        """Label texts with one request; items missing or invalid in the answer are asked again alone (with
        their prepared call, when given)."""
        vectors = vectors or [None] * len(texts)
        calls = calls or [None] * len(texts)

        def alone(index: int) -> Outcome:
            call = calls[index]
            return self.ask_prepared(call, texts[index]) if call else self.label_text(texts[index], vectors[index])

        if len(texts) == 1:
            return [alone(0)]
        outcomes = [Outcome(model_version=self.model_version) for _ in texts]
        try:
            request, fitted = self.prepare_batch(texts, vectors)
            for outcome in outcomes:
                outcome.demonstrations = tuple(e.ref for e in fitted.demonstrations)
            reply = self._chat(request)
            items = parse_batch_answer(reply.content, self.spec, len(texts))
        except (LLMError, InvalidAnswer, BudgetExceeded, BudgetReached):
            reply, items = None, {}
        if reply is not None:
            _share_usage(outcomes, reply)
        for number, outcome in enumerate(outcomes, start=1):
            labels = items.get(number)
            if isinstance(labels, tuple):
                _take(outcome, score_answer(reply.tokens, reply.content, self.spec, True, labels, item=str(number)))
            else:
                _merge(outcome, alone(number - 1))
        return outcomes

    def label_datas(self, datas: list) -> list[Outcome]:
        """Label several tasks' data in batches of `batch_size`; a task without text fails alone."""
        outcomes: dict[int, Outcome] = {}  # by the data's index; every index gets one
        texts = {}
        for index, data in enumerate(datas):
            try:
                texts[index] = self.spec.text_of(data)
            except MissingText as exc:
                outcomes[index] = Outcome(error="no_text", detail=str(exc), model_version=self.model_version)
        indexes = list(texts)
        try:
            vectors = dict(zip(indexes, self.query_vectors([texts[i] for i in indexes])))
        except LLMError as exc:
            for index in indexes:
                outcomes[index] = Outcome(
                    error="llm_error", detail=f"embedding: {exc}", model_version=self.model_version
                )
            return [outcomes[index] for index in range(len(datas))]
        for start in range(0, len(indexes), self.batch_size):
            chunk = indexes[start : start + self.batch_size]
            batch = self.ask_batch([texts[i] for i in chunk], [vectors[i] for i in chunk])
            for index, outcome in zip(chunk, batch):
                outcomes[index] = outcome
        return [outcomes[index] for index in range(len(datas))]

    def _read(self, content: str, tokens, outcome: Outcome, request: dict | None = None, text: str = "") -> None:
        if self.spec.structured:
            outcome.values, outcome.notes = parse_structured_answer(content, self.spec, text)
            outcome.labels = ()
            return
        json_mode = self.prompt.mode == "json"
        labels = parse_json_answer(content, self.spec) if json_mode else parse_text_answer(content, self.spec)
        _take(outcome, score_answer(tokens, content, self.spec, json_mode, labels))
        if (
            outcome.distribution
            and self.prompt.calibration == "contextual"
            and self.prompt.mode == "logprobs"
            and request is not None
        ):
            prior = self._content_free(request["messages"][:-1], self._chat_probe(request, outcome))
            _calibrated(outcome, calibrate(outcome.distribution, prior))

    # ---- echo scoring --------------------------------------------------------------------------------------

    def ask_echo(self, request: dict, messages: list[dict]) -> Outcome:
        """Score every label by echo and take the argmax; a server that cannot is named once, then refused.

        Until one request has shown that the server echoes log-probabilities, requests go one at a time, so
        a server without them gets one request, not one per thread.
        """
        if not self._echo_ok:
            with self._echo_first:
                if not self._echo_ok and not self._echo_refused:
                    outcome = self._ask_echo(request, messages)
                    self._echo_ok = outcome.error is None
                    return outcome
        return self._ask_echo(request, messages)

    def _ask_echo(self, request: dict, messages: list[dict]) -> Outcome:
        outcome = Outcome(model_version=self.model_version)
        if self._echo_refused:
            outcome.error, outcome.detail = "echo_unsupported", self._echo_refused
            return outcome
        try:
            distribution = self._echo_scores(request, outcome)
        except LLMError as exc:
            if exc.kind == "bad_request" and not self._echo_ok:  # once echo worked, a 400 is this task's
                return self._refuse_echo(outcome, f"refused it ({exc})")
            outcome.error, outcome.detail = "llm_error", str(exc)
            return outcome
        except BudgetReached as exc:
            outcome.error, outcome.detail = "budget", str(exc)
            return outcome
        except EchoUnusable as exc:
            if not self._echo_ok:
                return self._refuse_echo(outcome, f"answered without them ({exc})")
            outcome.error, outcome.detail = "malformed", f"echo reply: {exc}"
            return outcome
        _calibrated(outcome, distribution)
        if self.prompt.calibration == "contextual":
            score = partial(self._echo_probe, outcome)
            _calibrated(outcome, calibrate(distribution, self._content_free(messages[:-1], score)))
        return outcome

    def _echo_scores(self, request: dict, outcome: Outcome) -> dict[str, float]:
        if self.guard is not None:
            self.guard.check()
        reply = self._client().complete(request)
        if self.guard is not None:
            self.guard.record(reply.prompt_tokens, reply.completion_tokens)
        _add_usage(outcome, reply)
        return echo_distribution(request, reply.choices, self.spec)

    def _echo_probe(self, outcome: Outcome, messages: list[dict]) -> dict[str, float] | None:
        return self._echo_scores(echo_request(messages, self.spec, self.prompt.model), outcome)

    def _refuse_echo(self, outcome: Outcome, why: str) -> Outcome:
        message = (
            f"LLM_SCORING=echo needs the log-probabilities of the prompt's tokens from /v1/completions (echo "
            f"with logprobs), and the LLM server at {self.settings.openai_base_url or 'api.openai.com'} "
            f"{why}. vLLM gives them; OpenAI's current models and llama.cpp's llama-server do not. Set "
            "LLM_SCORING=answer (scores from the answer's top_logprobs)."
        )
        with self._lock:
            first, self._echo_refused = not self._echo_refused, message
        if first:
            log.error(message)
        outcome.error, outcome.detail = "echo_unsupported", message
        return outcome

    # ---- contextual calibration ----------------------------------------------------------------------------

    def _content_free(self, prefix: list[dict], score: Callable[[list[dict]], dict | None]) -> dict[str, float] | None:
        """The label distribution the same prompt (same demonstrations) gives content-free inputs; computed
        once per prompt prefix, so a fixed selection pays for it once per model_version."""
        key = stable_hash(prefix)
        with self._lock:
            key_lock = self._content_free_locks.setdefault(key, threading.Lock())
        with key_lock:  # one probe per prompt prefix, however many threads want it at once
            if key not in self._content_free_cache:
                self._content_free_cache[key] = average(self._probe(prefix, score))
        return self._content_free_cache[key]

    def _probe(self, prefix: list[dict], score: Callable[[list[dict]], dict | None]) -> list:
        found = []
        for text in CONTENT_FREE:
            messages = prefix + [{"role": "user", "content": render_query(self.prompt.template, text)}]
            try:
                found.append(score(messages))
            except (LLMError, BudgetReached, EchoUnusable):
                continue
        return found

    def _chat_probe(self, request: dict, outcome: Outcome) -> Callable[[list[dict]], dict | None]:
        def score(messages: list[dict]) -> dict | None:
            reply = self._chat({**request, "messages": messages})
            _add_usage(outcome, reply)
            return self._probe_distribution(reply)

        return score

    def _probe_distribution(self, reply) -> dict[str, float] | None:
        """P(label) of a content-free answer: read where its label, or else its first word, begins."""
        try:
            labels = parse_text_answer(reply.content, self.spec)
        except InvalidAnswer:
            labels = ()
        return score_answer(reply.tokens, reply.content, self.spec, False, labels).distribution

    def _agreement(self, request: dict, outcome: Outcome) -> float | None:
        """Confidence as agreement of a few answers sampled at temperature 0.7 (costs one call each)."""
        chosen = outcome.labels
        if chosen is None:  # no answer read: nothing to agree with
            return None
        samples = []
        for _ in range(self.prompt.confidence_samples):
            try:
                reply = self._chat({**request, "temperature": 0.7})
            except (LLMError, BudgetReached):
                continue
            _add_usage(outcome, reply)
            sample = Outcome()
            try:
                self._read(reply.content, None, sample)
                samples.append(sample.labels)
            except InvalidAnswer:
                samples.append(None)
        return agreement(chosen, samples)


def _build_single(spec: LabelingSpec, prompt: PromptSettings, demonstrations: list, text: str) -> list[dict]:
    return build_messages(spec, demonstrations, text, prompt)


def _build_batch(
    spec: LabelingSpec, prompt: PromptSettings, texts: list[str], demonstrations: list, _text: str
) -> list[dict]:
    return build_batch_messages(spec, demonstrations, texts, prompt)


def _add_usage(outcome: Outcome, reply) -> None:
    outcome.requests += reply.attempts
    outcome.prompt_tokens += reply.prompt_tokens
    outcome.completion_tokens += reply.completion_tokens


def _share_usage(outcomes: list[Outcome], reply) -> None:
    """A batch request's tokens, split over its items so per-task figures add up to the server's."""
    count = len(outcomes)
    for index, outcome in enumerate(outcomes):
        outcome.requests += reply.attempts if index == 0 else 0
        outcome.prompt_tokens += reply.prompt_tokens // count + (index < reply.prompt_tokens % count)
        outcome.completion_tokens += reply.completion_tokens // count + (index < reply.completion_tokens % count)


def _take(outcome: Outcome, scored: Scored) -> None:
    """An answer's labels and score: the argmax of its label distribution, or the parsed labels (score None)."""
    outcome.labels, outcome.score = scored.labels, scored.score
    outcome.distribution, outcome.unattributed = scored.distribution, scored.unattributed


def _calibrated(outcome: Outcome, distribution: dict[str, float]) -> None:
    best = max(distribution, key=distribution.__getitem__)
    outcome.labels, outcome.score, outcome.distribution = (best,), distribution[best], distribution


def _merge(outcome: Outcome, alone: Outcome) -> None:
    """An item asked again alone: its answer, plus what both requests cost."""
    outcome.labels, outcome.score, outcome.error, outcome.detail = alone.labels, alone.score, alone.error, alone.detail
    outcome.answer, outcome.distribution = alone.answer, alone.distribution
    outcome.demonstrations = alone.demonstrations
    outcome.unattributed = alone.unattributed
    outcome.requests += alone.requests
    outcome.prompt_tokens += alone.prompt_tokens
    outcome.completion_tokens += alone.completion_tokens


def label_many(labeler: Labeler, items: Iterable[tuple[K, object]], concurrency: int) -> Iterator[tuple[K, Outcome]]:
    """Label (key, data) pairs with at most `concurrency` requests in flight; yields as they finish.

    Items go out in batches of the labeler's batch size, submitted in a bounded window so a million-row
    input never sits in memory as futures.
    """
    items = iter(items)
    size = labeler.batch_size
    window = max(2 * concurrency * size, EMBED_PREFETCH)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="label") as pool:
        pending: dict = {}
        ahead: list = []
        while True:
            if not ahead:
                ahead = list(islice(items, window))
                _prefetch_vectors(labeler, ahead)
            while ahead and len(pending) < 2 * concurrency:
                batch, ahead = ahead[:size], ahead[size:]
                pending[pool.submit(labeler.label_datas, [data for _, data in batch])] = [key for key, _ in batch]
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from zip(pending.pop(future), future.result())


EMBED_PREFETCH = 256


def _prefetch_vectors(labeler: Labeler, items: list) -> None:
    """Embed the next queries in one batched call, so each batch then finds its vectors cached."""
    if labeler.embedder is None or not items:
        return
    texts = []
    for _, data in items:
        try:
            texts.append(labeler.spec.text_of(data))
        except MissingText:
            continue
    try:
        labeler.query_vectors(texts)
    except LLMError:
        pass  # each batch asks again and records the failure on its own tasks
