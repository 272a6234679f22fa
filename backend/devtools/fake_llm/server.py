"""HTTP plumbing of the fake OpenAI-compatible LLM stand-in: knobs, faults, stats, in-thread/subprocess servers, CLI."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backend.devtools.fake_llm import answers, reference
from backend.lifetime import child_preexec

LOG_PREFIX = "[FAKE LLM STAND-IN]"
FINGERPRINT = "fake-llm-stand-in"
STAND_IN_HEADER = "X-Fake-LLM"
DEFAULT_MODEL = "fake-llm"
HOST = "127.0.0.1"  # test equipment: loopback unless --host says otherwise (the compose demo network)
REQUEST_LOG_SIZE = 5000
WINDOWS_S = (1, 10, 60)
MODEL_PATHS = ("/v1/chat/completions", "/v1/completions")
POST_PATHS = MODEL_PATHS + ("/v1/embeddings",)
MAX_TOP_LOGPROBS = 20
MAX_PROMPTS = 256

# name -> (type, default). Settable by CLI/env at start, /_fake/config at runtime,
# and per request by query-string parameters or `X-Fake-<Name>` headers.
KNOBS: dict[str, tuple[type, object]] = {
    "latency_ms": (float, 0.0),
    "latency_jitter_ms": (float, 0.0),
    "rate_429": (float, 0.0),
    "retry_after": (float, 1.0),
    "rate_500": (float, 0.0),
    "rate_hang": (float, 0.0),
    "hang_s": (float, 30.0),
    "rate_malformed": (float, 0.0),
    "rate_out_of_set": (float, 0.0),
    "bias": (str, ""),
    "bias_strength": (float, 0.5),
    "seed": (int, 0),
    "batch_drop": (int, 0),  # items left out at the end of every batch answer
    "prior_last": (float, 0.0),  # score bonus for the last demonstration's label (a recency bias)
    "reference": (int, 0),  # 1: answer from the truths declared for each task text (reference.py)
    "echo": (int, 1),  # 0: refuse /v1/completions with echo and logprobs, as OpenAI's current models do
    # A provider's rate limit, enforced as providers quantize it: limit_rpm requests (limit_tpm tokens, the
    # prompt's plus max_tokens) per minute, counted over any limit_window_s seconds (1: 10 per second for
    # 600 per minute). Over it: 429 with Retry-After. limit_headers 1 sends x-ratelimit-* on every answer.
    "limit_rpm": (int, 0),
    "limit_tpm": (int, 0),
    "limit_window_s": (float, 1.0),
    "limit_headers": (int, 1),
}
SWITCHES = ("reference", "echo", "limit_headers")
# Faults are drawn in this order; the first that fires wins.
FAULTS = (
    ("429", "rate_429"),
    ("500", "rate_500"),
    ("hang", "rate_hang"),
    ("malformed", "rate_malformed"),
    ("out_of_set", "rate_out_of_set"),
)
BIAS_VALUES = ("", "last")


class KnobError(ValueError):
    """An unknown knob name or a value of the wrong kind."""


def log(message: str) -> None:
    print(f"{LOG_PREFIX} {message}", file=sys.stderr, flush=True)


def banner(url: str) -> str:
    return f"{LOG_PREFIX} listening on {url}"


# ------------------------------------------------------------------------ knobs


def knob_name(raw: str) -> str:
    """'Latency-Ms', 'latency_ms', 'LATENCY_MS' -> 'latency_ms'."""
    return raw.strip().lower().replace("-", "_")


def parse_knob(name: str, value):
    """Validate one knob and convert it (from a string or a JSON value) to its type."""
    if name not in KNOBS:
        raise KnobError(f"unknown knob {name!r}; known: {', '.join(KNOBS)}")
    kind, _ = KNOBS[name]
    if kind is str:
        text = "" if value is None else str(value).strip().lower()
        text = "" if text in ("none", "off", "0") else text
        if text not in BIAS_VALUES:
            raise KnobError(f"{name} must be one of {BIAS_VALUES}, got {value!r}")
        return text
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        raise KnobError(f"{name} must be a number, got {value!r}") from None
    if name in SWITCHES and number not in (0, 1):
        raise KnobError(f"{name} is 0 or 1, got {value!r}")
    if name.startswith("rate_") or name == "bias_strength":
        if not 0.0 <= number <= 1.0:
            raise KnobError(f"{name} is a probability in [0, 1], got {value!r}")
    elif name != "seed" and number < 0:
        raise KnobError(f"{name} must be >= 0, got {value!r}")
    return number


def parse_knobs(updates: dict) -> dict:
    return {knob_name(k): parse_knob(knob_name(k), v) for k, v in updates.items()}


def knobs_from_env(environ=None) -> dict:
    """Knobs from FAKE_LLM_<NAME> environment variables."""
    environ = os.environ if environ is None else environ
    found = {n: environ[f"FAKE_LLM_{n.upper()}"] for n in KNOBS if f"FAKE_LLM_{n.upper()}" in environ}
    return parse_knobs(found)


def request_overrides(query: str, headers) -> dict:
    """Per-request knobs from the URL query string and `X-Fake-<Name>` headers (headers win)."""
    raw = dict(parse_qsl(query))
    for key, value in headers.items():
        lowered = key.lower()
        if lowered.startswith("x-fake-") and lowered != STAND_IN_HEADER.lower():
            raw[key[len("x-fake-") :]] = value
    return parse_knobs(raw)


@dataclass
class Draw:
    """The random outcome of one request: fault (or None), bias hit, latency."""

    fault: str | None
    biased: bool
    latency_s: float
    batch_drop: int = 0
    prior_last: float = 0.0
    reference: bool = False
    echo: bool = True


# ------------------------------------------------------------------------ state


class FakeState:
    """Knobs, seeded RNG, statistics and request log shared by all handler threads."""

    def __init__(self, knobs: dict | None = None):
        self.lock = threading.Lock()
        self.stop_event = threading.Event()  # wakes sleeping (latency/hang) handlers on close
        # Knob values are int, float or str, each as KNOBS says (parse_knob converts them); readers know which.
        self.initial: dict[str, Any] = {name: default for name, (_, default) in KNOBS.items()}
        self.initial.update(parse_knobs(knobs or {}))
        self.config = dict(self.initial)
        self.rng = random.Random(self.config["seed"])
        self.models_seen: dict[str, None] = {}
        self.truths: dict[str, reference.Truth] = {}
        self._clear()

    def _clear(self) -> None:
        self.total = 0
        self.by_endpoint: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.windows: dict[int, deque[float]] = {w: deque() for w in WINDOWS_S}  # arrival times per width
        self.max_in_window = {w: 0 for w in WINDOWS_S}
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: deque = deque(maxlen=REQUEST_LOG_SIZE)
        self.admitted: deque = deque()  # (arrival, tokens) of the requests the rate limit let in
        self.limited = 0  # 429s sent by the rate limit (not the injected rate_429 faults)

    def configure(self, updates: dict) -> dict:
        parsed = parse_knobs(updates)
        with self.lock:
            self.config.update(parsed)
            if "seed" in parsed:
                self.rng.seed(parsed["seed"])
            return dict(self.config)

    def declare(self, truths: dict) -> int:
        """Add truths (task text -> truth JSON) for reference mode; TruthError names a bad one."""
        if not isinstance(truths, dict) or not all(isinstance(text, str) and text for text in truths):
            raise reference.TruthError("truths must be an object of task text -> truth")
        parsed = {text: reference.Truth.from_json(raw) for text, raw in truths.items()}
        with self.lock:
            self.truths.update(parsed)
            return len(self.truths)

    def reset(self, config: bool = False) -> None:
        with self.lock:
            self._clear()
            self.models_seen.clear()
            if config:
                self.config = dict(self.initial)
                self.truths.clear()
            # Reseeding makes "reset, then run" reproducible.
            self.rng.seed(self.config["seed"])

    def effective(self, overrides: dict) -> dict:
        with self.lock:
            return {**self.config, **overrides}

    def draw(self, knobs: dict, own_seed: bool) -> Draw:
        # One seeded RNG under a lock: with one client thread the fault sequence is reproducible.
        rng = random.Random(knobs["seed"]) if own_seed else self.rng
        with self.lock:
            rolls = [rng.random() for _ in FAULTS]
            bias_roll, jitter_roll = rng.random(), rng.random()
        fault = next((name for (name, knob), roll in zip(FAULTS, rolls) if roll < knobs[knob]), None)
        biased = knobs["bias"] == "last" and bias_roll < knobs["bias_strength"]
        jitter = (2.0 * jitter_roll - 1.0) * knobs["latency_jitter_ms"]  # symmetric +-jitter
        return Draw(
            fault,
            biased,
            max(0.0, knobs["latency_ms"] + jitter) / 1000.0,
            knobs["batch_drop"],
            knobs["prior_last"],
            bool(knobs["reference"]),
            bool(knobs["echo"]),
        )

    def arrive(self, path: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.total += 1
            self.by_endpoint[path] = self.by_endpoint.get(path, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if path in MODEL_PATHS:
                self._count_in_windows(now)

    def _count_in_windows(self, now: float) -> None:
        # The busiest window always ends at some arrival, so checking at arrivals finds the max.
        for width, stamps in self.windows.items():
            stamps.append(now)
            while stamps and stamps[0] <= now - width:
                stamps.popleft()
            self.max_in_window[width] = max(self.max_in_window[width], len(stamps))

    def take_limit(self, knobs: dict, tokens: int) -> tuple[bool, float, dict]:
        """(admitted, seconds until it would be, x-ratelimit-* headers) under the limit_* knobs."""
        rpm, tpm, window = knobs["limit_rpm"], knobs["limit_tpm"], knobs["limit_window_s"] or 1.0
        if not rpm and not tpm:
            return True, 0.0, {}
        allowed_r, allowed_t = rpm * window / 60, tpm * window / 60
        with self.lock:
            now = time.monotonic()
            while self.admitted and self.admitted[0][0] <= now - window:
                self.admitted.popleft()
            count, used = len(self.admitted), sum(t for _, t in self.admitted)
            wait = 0.0
            if rpm and count + 1 > allowed_r:
                wait = (
                    self.admitted[count - int(allowed_r)][0] + window - now if count >= int(allowed_r) >= 1 else window
                )
            if tpm and used + tokens > allowed_t:
                freed, need = 0, used + tokens - allowed_t
                for stamp, spent in self.admitted:
                    freed += spent
                    if freed >= need:
                        wait = max(wait, stamp + window - now)
                        break
                else:
                    wait = max(wait, window)
            ok = wait <= 0
            if ok:
                self.admitted.append((now, tokens))
                count, used = count + 1, used + tokens
            else:
                self.limited += 1
            reset = (self.admitted[0][0] + window - now) if self.admitted else 0.0
        if not knobs["limit_headers"]:
            return ok, max(wait, 0.0), {}
        scale = 60 / window  # remaining is stated in the minute's terms, as the limit is
        headers = {}
        if rpm:
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(rpm),
                    "x-ratelimit-remaining-requests": str(max(0, int((allowed_r - count) * scale))),
                    "x-ratelimit-reset-requests": f"{max(reset, 0.0) * 1000:.0f}ms",
                }
            )
        if tpm:
            headers.update(
                {
                    "x-ratelimit-limit-tokens": str(tpm),
                    "x-ratelimit-remaining-tokens": str(max(0, int((allowed_t - used) * scale))),
                    "x-ratelimit-reset-tokens": f"{max(reset, 0.0) * 1000:.0f}ms",
                }
            )
        return ok, max(wait, 0.0), headers

    def finish(self, entry: dict, usage: dict | None) -> None:
        status = str(entry["status"])
        with self.lock:
            self.in_flight -= 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if entry.get("fault"):
                self.faults[entry["fault"]] = self.faults.get(entry["fault"], 0) + 1
            if usage:
                self.prompt_tokens += usage.get("prompt_tokens", 0)
                self.completion_tokens += usage.get("completion_tokens", 0)
            if entry.get("model"):
                self.models_seen.setdefault(entry["model"], None)
            self.log.append(entry)

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.total,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "max_in_window": {str(w): n for w, n in self.max_in_window.items()},
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "rate_limited": self.limited,
                "models": [DEFAULT_MODEL] + [m for m in self.models_seen if m != DEFAULT_MODEL],
                "config": dict(self.config),
                "truths": len(self.truths),
            }

    def requests(self) -> list[dict]:
        with self.lock:
            return list(self.log)


# ------------------------------------------------------------ response bodies


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": f"{message} (fake LLM stand-in)", "type": kind, "param": None, "code": code}}


def validate(path: str, body) -> str | None:
    """An error message when the request body is unusable for the endpoint."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if path == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return "missing or invalid 'messages': a non-empty list of message objects is required"
        if body.get("stream"):
            return "'stream' is not supported by the stand-in"
    elif path == "/v1/completions":
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        if not prompts or len(prompts) > MAX_PROMPTS or not all(isinstance(p, str) for p in prompts):
            return f"missing or invalid 'prompt': a string or a list of 1 to {MAX_PROMPTS} strings is required"
    elif path == "/v1/embeddings":
        value = body.get("input")
        if not (isinstance(value, str) or (isinstance(value, list) and value)):
            return "missing or invalid 'input': a string or a list of strings is required"
    return None


def request_tokens(body) -> int:
    """What a request counts against a token limit, as OpenAI counts it: its prompt plus max_tokens."""
    if not isinstance(body, dict):
        return 0
    prompt = sum(
        answers.count_tokens(answers.message_text(m.get("content"))) + 4
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )
    prompts = body.get("prompt") or []
    prompt += sum(
        answers.count_tokens(p) for p in ([prompts] if isinstance(prompts, str) else prompts) if isinstance(p, str)
    )
    answer = body.get("max_tokens") or body.get("max_completion_tokens") or 16
    return prompt + int(answer) if isinstance(answer, (int, float)) else prompt


def chat_usage(messages: list[dict], content: str) -> dict:
    prompt = sum(answers.count_tokens(answers.message_text(m.get("content"))) + 4 for m in messages)
    completion = answers.count_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _top_k(value, default: int = 5) -> int:
    try:
        return max(0, min(MAX_TOP_LOGPROBS, int(value)))
    except (TypeError, ValueError):
        return default


def _apply_fault(answer: answers.Answer, draw: Draw, labels: list[str], json_wanted: bool) -> answers.Answer:
    if draw.fault == "malformed":
        return answers.to_malformed(answer, json_wanted)
    if draw.fault == "out_of_set":
        return answers.to_out_of_set(answer, labels)
    return answer


def chat_response(body: dict, draw: Draw, request_id: str) -> dict:
    prompt = answers.parse_chat(body["messages"])
    response_format = body.get("response_format")
    answer = answers.answer_chat(prompt, response_format, bias_last=draw.biased, prior_last=draw.prior_last)
    if draw.batch_drop and answer.kind == "batch":
        answer = answers.drop_batch_items(answer, draw.batch_drop)
    json_wanted = answers.wants_json(response_format) or answers.parse_json_answer(answer.content) is not None
    answer = _apply_fault(answer, draw, answers.label_set(prompt, response_format), json_wanted)
    logprobs = None
    if body.get("logprobs"):
        logprobs = {"content": answers.chat_logprobs(answer, _top_k(body.get("top_logprobs"))), "refusal": None}
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": answer.content, "refusal": None},
        "logprobs": logprobs,
        "finish_reason": "stop",
    }
    count = max(1, min(8, _top_k(body.get("n"), 1)))  # n identical choices
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "system_fingerprint": FINGERPRINT,
        "choices": [{**choice, "index": i} for i in range(count)],
        "usage": chat_usage(body["messages"], answer.content),
    }


def completion_response(body: dict, draw: Draw, request_id: str) -> dict:
    """The stand-in's completion of each prompt (a list of prompts gets one choice each); `echo` is ignored,
    as servers without prompt log-probabilities ignore it."""
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, prompt in enumerate(prompts):
        answer = answers.answer_completion(prompt, bias_last=draw.biased)
        if draw.fault == "malformed":
            answer = answers.Answer(" " + answers.GARBAGE_TEXT, [], "malformed")
        elif draw.fault == "out_of_set":
            dist = answers.with_extra_label(answer.slots[0][1] if answer.slots else {}, answers.OUT_OF_SET_LABEL)
            answer = answers.Answer(" " + answers.OUT_OF_SET_LABEL, [(answers.OUT_OF_SET_LABEL, dist)], "out_of_set")
        logprobs = None
        if body.get("logprobs") is not None:
            logprobs = answers.completion_logprobs(answer, _top_k(body["logprobs"]), len(prompt))
        choices.append({"text": answer.content, "index": index, "logprobs": logprobs, "finish_reason": "stop"})
        prompt_tokens += answers.count_tokens(prompt)
        completion_tokens += answers.count_tokens(answer.content)
    return completion_envelope(body, request_id, choices, prompt_tokens, completion_tokens)


def completion_envelope(
    body: dict, request_id: str, choices: list[dict], prompt_tokens: int, completion_tokens: int
) -> dict:
    return {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# ------------------------------------------------------------- reference mode


class NoTruth(ValueError):
    """A reference-mode request the declared truths do not cover, or one the mode cannot answer (a 400)."""


def _truth_of(truths: dict, text: str) -> tuple[str, reference.Truth]:
    found = reference.find_truth(truths, text)
    if found is None:
        raise NoTruth(
            f"reference mode: no truth is declared for any task text in {text[-160:]!r}; declare it "
            'with POST /_fake/truth {"truths": {"<task text>": {"labels": {...}}}}'
        )
    return found


def reference_chat_response(body: dict, request_id: str, truths: dict) -> dict:
    """A chat answer decoded greedily from the declared truth of the query's task text (of each batch item)."""
    prompt = answers.parse_chat(body["messages"])
    kind = reference.answer_kind(body.get("response_format"))
    top_k = _top_k(body.get("top_logprobs"), 0)
    if kind == "batch":
        items = [(number, _truth_of(truths, text)[1]) for number, text in answers.batch_items(prompt.query)]
        if not items:
            raise NoTruth("reference mode: a batch schema but no [item N] blocks in the query")
        content, entries = reference.batch_reply(items, top_k)
        finish = "stop"
    else:
        _, truth = _truth_of(truths, prompt.query)
        content, entries, finish = reference.reply(truth, kind, top_k, body.get("max_tokens"))
    logprobs = {"content": entries, "refusal": None} if body.get("logprobs") else None
    prompt_tokens = sum(len(reference.tokenize(answers.message_text(m.get("content")))) + 4 for m in body["messages"])
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(entries),
            "total_tokens": prompt_tokens + len(entries),
        },
    }


def reference_completion_response(body: dict, draw: Draw, request_id: str, truths: dict) -> dict:
    """Completions against the declared truth: with `echo`, every prompt token's log-probability (the answer
    part exact); the generated text is the greedy answer when the prompt stops where the answer begins."""
    echo, wants_logprobs = bool(body.get("echo")), body.get("logprobs") is not None
    if echo and wants_logprobs and not draw.echo:
        raise NoTruth("Setting 'echo' and 'logprobs' at the same time is not supported for this model.")
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    top_k, max_tokens = _top_k(body.get("logprobs"), 0), body.get("max_tokens", 16)
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, prompt in enumerate(prompts):
        text, truth = _truth_of(truths, prompt)
        start = reference.answer_start(prompt, text, truth)
        if start is None:
            raise NoTruth(f"reference mode: no {truth.marker!r} after the task text in the prompt")
        steps: list[reference.Step] = []
        ended = True
        if start == len(prompt) and max_tokens:  # nothing of the answer given: generate it
            steps, ended = reference.greedy(
                reference.build_trie(truth.answers("completion")), top_k, truth.end, max_tokens
            )
        generated, entries = reference.chat_entries(steps)
        logprobs = None
        if wants_logprobs:
            logprobs = (
                reference.echo_logprobs(prompt, start, truth, top_k)
                if echo
                else {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            )
            offset = len(prompt) if echo else 0
            for entry in entries:
                logprobs["tokens"].append(entry["token"])
                logprobs["token_logprobs"].append(entry["logprob"])
                logprobs["top_logprobs"].append({e["token"]: e["logprob"] for e in entry["top_logprobs"]})
                logprobs["text_offset"].append(offset)
                offset += len(entry["token"])
        choices.append(
            {
                "text": (prompt if echo else "") + generated,
                "index": index,
                "logprobs": logprobs,
                "finish_reason": "stop" if ended else "length",
            }
        )
        prompt_tokens += len(reference.tokenize(prompt))
        completion_tokens += len(steps)
    return completion_envelope(body, request_id, choices, prompt_tokens, completion_tokens)


def embeddings_response(body: dict) -> dict:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) if isinstance(x, list) else str(x) for x in inputs]
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = answers.embed(text, int(body.get("dimensions") or answers.EMBED_DIMS))
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": answers.embedding_base64(vector) if as_base64 else vector,
            }
        )
    tokens = sum(answers.count_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model") or DEFAULT_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response(state: FakeState) -> dict:
    names = state.stats()["models"]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fake-llm-stand-in"} for n in names],
    }


# ---------------------------------------------------------------------- handler


class FakeHandler(BaseHTTPRequestHandler):
    """Routes /v1/* (OpenAI-compatible) and /_fake/* (control) requests."""

    protocol_version = "HTTP/1.1"  # keep-alive, so benchmarks measure the client, not TCP setup
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this, 40 ms delayed-ACK stalls
    server_version = "FakeLLMStandIn/1.0"
    timeout = 300  # idle keep-alive connections eventually release their thread
    server: FakeServer

    # -- plumbing

    def send_response(self, code, message=None):
        super().send_response(code, message)
        # Every response, errors included, says it is a stand-in.
        self.send_header(STAND_IN_HEADER, "stand-in")

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        if self.server.verbose:
            log(f"{self.address_string()} {format % args}")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. timed out during a hang); nothing to tell it

    def _split(self) -> tuple[str, str]:
        parts = urlsplit(self.path)
        return parts.path.rstrip("/") or "/", parts.query

    # -- routing

    def do_GET(self):
        path, _ = self._split()
        state = self.server.state
        if path == "/v1/models":
            return self._send_json(200, models_response(state))
        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            return self._send_json(200, {"id": name, "object": "model", "created": 0, "owned_by": "fake-llm-stand-in"})
        if path == "/_fake/stats":
            return self._send_json(200, state.stats())
        if path == "/_fake/requests":
            return self._send_json(200, {"requests": state.requests()})
        if path == "/_fake/config":
            return self._send_json(200, {"config": state.effective({})})
        if path in ("/", "/health", "/_fake/health"):
            return self._send_json(200, {"status": "ok", "stand_in": True})
        self._send_json(404, error_body(f"no route GET {path}", code="not_found"))

    def do_POST(self):
        path, query = self._split()
        raw = self._read_body()  # always drain: the connection is kept alive
        if path in POST_PATHS:
            return self._serve_model(path, query, raw)
        body, problem = _decode(raw)
        if path == "/_fake/config":
            return self._post_config(body, problem)
        if path == "/_fake/truth":
            return self._post_truth(body, problem)
        if path == "/_fake/reset":
            config = bool(isinstance(body, dict) and body.get("config"))
            self.server.state.reset(config=config)
            return self._send_json(200, {"reset": True, "config_reset": config})
        self._send_json(404, error_body(f"no route POST {path}", code="not_found"))

    def _post_config(self, body, problem):
        if problem or not isinstance(body, dict):
            return self._send_json(400, error_body(problem or "config must be a JSON object"))
        try:
            return self._send_json(200, {"config": self.server.state.configure(body)})
        except KnobError as error:
            return self._send_json(400, error_body(str(error)))

    def _post_truth(self, body, problem):
        if problem or not isinstance(body, dict) or not isinstance(body.get("truths"), dict):
            return self._send_json(400, error_body(problem or 'expected {"truths": {"<task text>": {...}}}'))
        try:
            return self._send_json(200, {"declared": self.server.state.declare(body["truths"])})
        except reference.TruthError as error:
            return self._send_json(400, error_body(str(error)))

    # -- the OpenAI-compatible endpoints

    def _serve_model(self, path: str, query: str, raw: bytes) -> None:
        state = self.server.state
        state.arrive(path)
        body, problem = _decode(raw)
        entry = {
            "t": time.time(),
            "path": path,
            "body": body if problem is None else raw.decode("utf-8", "replace"),
            "status": None,
            "fault": None,
            "model": body.get("model") if isinstance(body, dict) else None,
        }
        try:
            overrides = request_overrides(query, self.headers)
        except KnobError as error:
            return self._reply(entry, 400, error_body(str(error)))
        problem = problem or validate(path, body)
        if problem:
            return self._reply(entry, 400, error_body(problem))
        if overrides:
            entry["overrides"] = overrides
        knobs = state.effective(overrides)
        draw = state.draw(knobs, own_seed="seed" in overrides)
        if (path == "/v1/embeddings" or draw.reference) and draw.fault in ("malformed", "out_of_set"):
            draw.fault = None  # vectors, and declared truths, have no label to break; transport faults apply
        entry["fault"], entry["biased"] = draw.fault, draw.biased
        admitted, retry, limit_headers = (
            state.take_limit(knobs, request_tokens(body)) if path in MODEL_PATHS else (True, 0.0, {})
        )
        self._limit_headers = limit_headers
        if not admitted:  # refused at once, as providers do; a refused request does not count
            entry["fault"] = "rate_limit"
            body = error_body(
                f"Rate limit reached: {knobs['limit_rpm']} requests / {knobs['limit_tpm']} tokens "
                f"per minute, enforced per {knobs['limit_window_s']:g} s",
                "requests",
                "rate_limit_exceeded",
            )
            return self._reply(
                entry, 429, body, {"Retry-After": f"{retry:.3f}", "retry-after-ms": str(int(retry * 1000) + 1)}
            )
        state.stop_event.wait(draw.latency_s)
        if draw.fault in ("429", "500"):
            return self._reply_fault(entry, draw.fault, knobs)
        if draw.fault == "hang":
            state.stop_event.wait(knobs["hang_s"])  # then answer normally; clients should time out first
        try:
            payload = self._build(path, body, draw)
        except NoTruth as error:
            return self._reply(entry, 400, error_body(str(error)))
        except Exception as error:  # a stand-in bug must still answer, and say so
            log(f"internal error on {path}: {error!r}")
            return self._reply(entry, 500, error_body(f"stand-in internal error: {error!r}", "server_error"))
        self._reply(entry, 200, payload)

    def _reply_fault(self, entry: dict, fault: str, knobs: dict) -> None:
        if fault == "500":
            return self._reply(entry, 500, error_body("Internal server error (injected fault)", "server_error"))
        retry = knobs["retry_after"]
        # The openai client reads retry-after-ms first, then Retry-After (seconds, may be fractional).
        headers = {"Retry-After": f"{retry:g}", "retry-after-ms": str(int(round(retry * 1000)))}
        body = error_body("Rate limit reached (injected fault)", "requests", "rate_limit_exceeded")
        return self._reply(entry, 429, body, headers)

    def _build(self, path: str, body: dict, draw: Draw) -> dict:
        request_id = f"fake-{self.server.next_id()}"
        truths = self.server.state.truths
        if path == "/v1/chat/completions":
            return (
                reference_chat_response(body, request_id, truths)
                if draw.reference
                else chat_response(body, draw, request_id)
            )
        if path == "/v1/completions":
            return (
                reference_completion_response(body, draw, request_id, truths)
                if draw.reference
                else completion_response(body, draw, request_id)
            )
        return embeddings_response(body)

    def _reply(self, entry: dict, status: int, payload: dict, headers: dict | None = None) -> None:
        entry["status"] = status
        self.server.state.finish(entry, payload.get("usage") if status == 200 else None)
        headers = {**getattr(self, "_limit_headers", {}), **(headers or {})}
        self._limit_headers = {}
        self._send_json(status, payload, headers)


def _decode(raw: bytes):
    """(parsed JSON, None) or (None, error message)."""
    if not raw.strip():
        return None, "request body is empty; a JSON object is required"
    try:
        return json.loads(raw), None
    except ValueError as error:
        return None, f"request body is not valid JSON: {error}"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not block close() or interpreter exit
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, state: FakeState, port: int = 0, verbose: bool = False, host: str = HOST):
        super().__init__((host, port), FakeHandler)
        self.host = host
        self.state = state
        self.verbose = verbose
        self._ids = iter(range(1, 1 << 62))
        self._id_lock = threading.Lock()

    def next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{shown}:{self.server_address[1]}/v1"


# ------------------------------------------------------------- in-thread API


class FakeLLM:
    """In-thread fake LLM server on a free port; use as a context manager in tests and benchmarks."""

    def __init__(self, *, port: int = 0, verbose: bool = False, **knobs):
        self.state = FakeState(knobs)
        self._server = FakeServer(self.state, port, verbose)
        self.port: int = self._server.server_address[1]
        self.url: str = self._server.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-llm-{self.port}", daemon=True
        )
        self._thread.start()
        self._closed = False
        log(f"in-thread server listening on {self.url}")

    def stats(self) -> dict:
        return self.state.stats()

    def requests(self) -> list[dict]:
        return self.state.requests()

    def configure(self, **knobs) -> dict:
        return self.state.configure(knobs)

    def declare(self, truths: dict) -> int:
        """Declare truths (task text -> truth) for reference mode (knob reference=1)."""
        return self.state.declare(truths)

    def reset(self, config: bool = False) -> None:
        self.state.reset(config=config)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.state.stop_event.set()  # wake handlers sleeping in latency/hang
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------ subprocess API


def _http_json(method: str, url: str, payload=None, timeout: float = 10.0) -> dict:
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read() or b"{}")


class FakeLLMProcess:
    """A fake LLM server running in a subprocess (see spawn_fake_llm)."""

    def __init__(self, popen: subprocess.Popen[str], banner_line: str):
        self.popen = popen
        self.pid = popen.pid
        self.banner = banner_line
        self.url = banner_line.rsplit(" ", 1)[-1]
        port = re.search(r":(\d+)/v1$", self.url)
        if port is None:
            raise RuntimeError(f"fake LLM banner names no port: {banner_line!r}")
        self.port = int(port.group(1))
        self._control = self.url[: -len("/v1")] + "/_fake"

    def stats(self) -> dict:
        return _http_json("GET", self._control + "/stats")

    def requests(self) -> list[dict]:
        return _http_json("GET", self._control + "/requests")["requests"]

    def configure(self, **knobs) -> dict:
        return _http_json("POST", self._control + "/config", knobs)["config"]

    def declare(self, truths: dict) -> int:
        return _http_json("POST", self._control + "/truth", {"truths": truths})["declared"]

    def reset(self, config: bool = False) -> None:
        _http_json("POST", self._control + "/reset", {"config": config})

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM by PID, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if self.popen.stdout:
            self.popen.stdout.close()
        return self.popen.returncode

    def __enter__(self) -> FakeLLMProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_banner(popen: subprocess.Popen[str], timeout: float) -> str:
    stdout = popen.stdout
    if stdout is None:
        raise ValueError("the fake LLM subprocess was started without stdout=PIPE; its banner cannot be read")
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.05):
                line = stdout.readline()
                if line.startswith(f"{LOG_PREFIX} listening on "):
                    return line.strip()
                if not line and popen.poll() is not None:
                    break
            elif popen.poll() is not None:
                break
    raise RuntimeError(f"fake LLM subprocess did not print its banner (exit code {popen.poll()})")


def spawn_fake_llm(
    *, port: int = 0, verbose: bool = False, env: dict | None = None, startup_timeout: float = 15.0, **knobs
) -> FakeLLMProcess:
    """Start `python -m backend.devtools.fake_llm` in a subprocess and wait for its banner."""
    args = [sys.executable, "-m", "backend.devtools.fake_llm", "--port", str(port)]
    for name, value in parse_knobs(knobs).items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    if not verbose:
        args.append("--quiet")
    root = str(Path(__file__).resolve().parents[3])  # so `backend` imports from any cwd
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
    # child_preexec: the stand-in goes when the process that started it dies, however it dies.
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=child_env, cwd=root, preexec_fn=child_preexec)
    try:
        return FakeLLMProcess(popen, _read_banner(popen, startup_timeout))
    except BaseException:
        popen.kill()
        popen.wait()
        raise


# ------------------------------------------------------------------------- CLI


DESCRIPTION = (
    "Fake OpenAI-compatible LLM STAND-IN for tests, benchmarks and demos (binds 127.0.0.1 unless --host). "
    "Every knob can also be set by FAKE_LLM_<NAME> env vars, POST /_fake/config, URL query parameters or "
    "X-Fake-<Name> request headers."
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The server's options, on its own parser or on `fewshot-prelabel fake-llm` (one definition for both)."""
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FAKE_LLM_PORT", "0")),
        help="port on 127.0.0.1 (0 = a free one; default $FAKE_LLM_PORT or 0)",
    )
    parser.add_argument(
        "--host",
        default=HOST,
        help="address to bind (default 127.0.0.1; 0.0.0.0 only on a private network such as the compose demo)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    for name, (kind, default) in KNOBS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            metavar=kind.__name__.upper(),
            help=f"default {default!r}",
        )
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m backend.devtools.fake_llm", description=DESCRIPTION))


def main(argv: list[str] | None = None) -> int:
    return serve(build_parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Run the server with parsed options until SIGINT/SIGTERM."""
    try:
        knobs = knobs_from_env()
        knobs.update(parse_knobs({n: getattr(args, n) for n in KNOBS if getattr(args, n) is not None}))
    except KnobError as error:
        log(f"bad knob: {error}")
        return 2
    state = FakeState(knobs)
    try:
        server = FakeServer(state, args.port, verbose=not args.quiet, host=args.host)
    except OSError as error:
        log(f"cannot listen on {args.host}:{args.port}: {error.strerror}; choose another --port (0 = a free one)")
        return 2
    print(banner(server.url), flush=True)  # the one stdout line; parents read the port from it
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        state.stop_event.set()
        server.server_close()
        log("stopped")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
