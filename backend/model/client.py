"""The one place that talks to the model: an OpenAI-compatible chat client with retries and usage counts."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import openai
from openai._constants import RAW_RESPONSE_HEADER
from openai._types import RequestOptions
from openai.types import Completion
from openai.types.chat import ChatCompletion

from backend.labeling.answers import TokenLogprob
from backend.labeling.echo import EchoChoice
from backend.model.errors import LLMError

if TYPE_CHECKING:
    from backend.settings import Settings

log = logging.getLogger(__name__)

FAKE_FINGERPRINT = "fake-llm-stand-in"
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0
# The SDK returns the raw response (headers, then parse()).
RAW: RequestOptions = {"headers": {RAW_RESPONSE_HEADER: "true"}}

_T = TypeVar("_T")


@dataclass
class Reply:
    """One model answer with what it cost."""

    content: str
    tokens: list[TokenLogprob] | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    model: str = ""


@dataclass
class CompletionReply:
    """A /v1/completions answer: one choice per prompt, in prompt order, with what it cost."""

    choices: list[EchoChoice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    model: str = ""


@dataclass
class Usage:
    """Requests and tokens spent, added up across threads."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, requests: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class LLMClient:
    """Chat completions at temperature 0; transient failures retried with backoff that honours Retry-After."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        before_request: Callable[[dict], None] | None = None,
        after_response: Callable[[dict, int, Mapping[str, str]], None] | None = None,
    ):
        self.settings = settings
        self.usage = Usage()
        self._sleep = sleep
        # A hook for shared rate limits: called before every HTTP request with the request body.
        self._before_request = before_request
        # ... and after every answer (429s included) with the request body, the status and the headers: the
        # provider's x-ratelimit-* headers and Retry-After teach the shared limiter.
        self._after_response = after_response
        self._warned_fake = False
        self._client = openai.OpenAI(
            api_key=settings.openai_api_key.reveal() or "not-set",
            base_url=settings.openai_base_url or None,
            timeout=settings.timeout,
            max_retries=0,  # retries are ours: they must honour Retry-After and count usage
        )

    def chat(self, request: dict) -> Reply:
        """Send one chat request (model, messages and parameters); LLMError when every retry failed."""
        body = {"model": self.settings.model, "temperature": 0, **request}
        return self._retrying(lambda attempt: self._send(body, attempt))

    def complete(self, request: dict) -> CompletionReply:
        """Send one /v1/completions request (echo scoring); LLMError when every retry failed."""
        body = {"model": self.settings.model, "temperature": 0, **request}
        return self._retrying(lambda attempt: self._send_completion(body, attempt))

    def embed(self, texts: list[str], model: str) -> tuple[list[list[float]], int]:
        """Embedding vectors of texts (in their order) and the prompt tokens spent; one HTTP request
        (plus retries), so the caller sizes the batch. LLMError when every retry failed."""
        if not texts:
            return [], 0
        body: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
        response = self._retrying(
            lambda attempt: self._call(body, lambda: self._client.embeddings.with_raw_response.create(**body))
        )
        usage = getattr(response, "usage", None)
        prompt = (usage.prompt_tokens or 0) if usage else 0
        self.usage.add(prompt_tokens=prompt)
        data = sorted(response.data or [], key=lambda d: d.index)
        if [d.index for d in data] != list(range(len(texts))):
            raise LLMError("server_error", f"the LLM server answered {len(data)} embeddings for {len(texts)} inputs")
        return [list(d.embedding) for d in data], prompt

    def _retrying(self, send: Callable[[int], _T]) -> _T:
        """send(attempt number), retried with backoff on transient LLMErrors; the last one is raised."""
        last: LLMError | None = None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt, last))
            try:
                return send(attempt + 1)
            except LLMError as exc:
                if exc.kind in ("auth", "bad_request"):
                    raise
                last = exc
        raise last  # type: ignore[misc]

    def _send(self, body: dict, attempt: int) -> Reply:
        # The low-level post skips the SDK's recursive TypedDict transform of the body, which costs
        # ~2 ms per message (60 ms for a 64-example prompt); the body is already plain JSON.
        response = self._call(
            body, lambda: self._client.post("/chat/completions", body=body, cast_to=ChatCompletion, options=RAW)
        )
        return self._reply(response, attempt)

    def _send_completion(self, body: dict, attempt: int) -> CompletionReply:
        response = self._call(
            body, lambda: self._client.post("/completions", body=body, cast_to=Completion, options=RAW)
        )
        prompt, completion = self._note(response)
        choices = sorted(response.choices or [], key=lambda c: c.index)
        return CompletionReply(
            [_echo_choice(c) for c in choices], prompt, completion, attempt, getattr(response, "model", "")
        )

    def _call(self, body: dict, request: Callable[[], Any]) -> Any:
        """One HTTP request: the rate-limit hooks, one counted request, openai errors as LLMError.

        `request` returns the SDK's raw response (its headers feed the limiter); this returns it parsed.
        """
        if self._before_request:
            self._before_request(body)
        self.usage.add(requests=1)
        try:
            raw = request()
        except openai.APIStatusError as exc:
            self._report(body, exc.status_code, exc.response.headers)
            raise _translate_status(exc, self.settings.openai_api_key.reveal()) from None
        except openai.APITimeoutError:
            raise LLMError("timeout", f"no answer within {self.settings.timeout:g} s (LLM_TIMEOUT)") from None
        except openai.APIConnectionError as exc:
            raise LLMError("connection", f"cannot reach the LLM server: {type(exc.__cause__).__name__}") from None
        self._report(body, raw.status_code, raw.headers)
        return raw.parse()

    def _report(self, body: dict, status: int, headers) -> None:
        if self._after_response:
            try:
                self._after_response(body, status, headers)
            except Exception as exc:  # noqa: BLE001 - the answer is good; a limiter hiccup must not lose it
                log.warning("the rate limiter could not take an answer's headers: %s", exc)

    def _note(self, response) -> tuple[int, int]:
        """Warn once when the server is the fake stand-in; count and return (prompt, completion) tokens."""
        if getattr(response, "system_fingerprint", None) == FAKE_FINGERPRINT and not self._warned_fake:
            self._warned_fake = True
            log.warning(
                "THE LLM AT %s IS THE FAKE STAND-IN SERVER: labels come from a test double, not a real model",
                self.settings.openai_base_url,
            )
        usage = response.usage
        prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.usage.add(prompt_tokens=prompt, completion_tokens=completion)
        return prompt, completion

    def _reply(self, response, attempt: int) -> Reply:
        prompt, completion = self._note(response)
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content or "") if choice else ""
        return Reply(
            content=content,
            tokens=_tokens(choice),
            prompt_tokens=prompt,
            completion_tokens=completion,
            attempts=attempt,
            model=getattr(response, "model", ""),
        )

    def _delay(self, attempt: int, error: LLMError | None) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        return random.uniform(0, min(MAX_BACKOFF_S, 0.25 * 2**attempt))

    def close(self) -> None:
        self._client.close()


def _translate_status(exc: openai.APIStatusError, secret: str = "") -> LLMError:
    status = exc.status_code
    if status == 429:
        error = LLMError("rate_limited", "the LLM server answered 429 Too Many Requests")
        error.retry_after = _retry_after(exc.response.headers)  # type: ignore[attr-defined]
        return error
    if status in (401, 403):
        return LLMError("auth", f"the LLM server refused the API key ({status}); check OPENAI_API_KEY")
    if status >= 500 or status in (408, 409):
        return LLMError("server_error", f"the LLM server answered {status}")
    return LLMError("bad_request", f"the LLM server answered {status}: {_error_message(exc, secret)}")


def _retry_after(headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to backoff
    return None


def _error_message(exc: openai.APIStatusError, secret: str = "") -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message") if body else None
    text = str(message or exc.message)
    # Some servers and proxies quote the API key they were sent: it must not reach logs, Redis or /status.
    return (text.replace(secret, "***") if secret else text)[:300]


def _tokens(choice) -> list[TokenLogprob] | None:
    logprobs = getattr(choice, "logprobs", None) if choice else None
    content = getattr(logprobs, "content", None) if logprobs else None
    if not content:
        return None
    return [
        TokenLogprob(_spelled(t), t.logprob, tuple((_spelled(a), a.logprob) for a in (t.top_logprobs or [])))
        for t in content
    ]


def _spelled(token) -> str:
    """A token's text from its bytes when the server sent them: a token may hold part of a UTF-8 character,
    which surrogateescape keeps (labeling.probabilities compares bytes)."""
    raw = getattr(token, "bytes", None)
    return bytes(raw).decode("utf-8", "surrogateescape") if raw else token.token


def _echo_choice(choice) -> EchoChoice:
    logprobs = choice.logprobs
    if logprobs is None:
        return EchoChoice(choice.text or "", (), ())
    return EchoChoice(choice.text or "", tuple(logprobs.tokens or ()), tuple(logprobs.token_logprobs or ()))


def unreachable(settings: Settings) -> str | None:
    """Why no connection to the LLM server can be opened at all, or None when it answers anything (a 401 or
    404 included: then the requests themselves say what is wrong). For commands that would otherwise report
    every row as failed; nothing is sent but a GET of /models, through the same openai client."""
    client = openai.OpenAI(
        api_key=settings.openai_api_key.reveal() or "not-set",
        base_url=settings.openai_base_url or None,
        timeout=min(settings.timeout, 10.0),
        max_retries=0,
    )
    try:
        client.models.list()
    except openai.APITimeoutError as exc:
        if type(exc.__cause__).__name__ == "ConnectTimeout":  # httpx's: no connection within the timeout
            return f"ConnectTimeout: {exc.__cause__}"
        return None  # it accepted the connection: a slow /models says nothing about the chat requests
    except openai.APIConnectionError as exc:
        return f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}"
    except (openai.OpenAIError, ValueError):
        return None
    finally:
        client.close()
    return None
