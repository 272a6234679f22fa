"""Requests-per-minute and tokens-per-minute limits shared by every process through one Redis."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from typing import Callable

import redis

from .store import PREFIX

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # what a request without max_tokens is assumed to spend on its answer
ARRIVAL_MARGIN = 0.02
KEY_SLACK_MS = 1000  # keys outlive the newest entry's window by this much, then vanish by themselves

# One script does trim, check and admit, so two processes can never both take the last free slot.
# Scores are integer microseconds of Redis's own clock (TIME): clients on machines with skewed clocks
# still agree, and integers below 2^53 compare exactly (no float edge at the window boundary).
# Members are "<tokens>:<unique id>"; KEYS[2] holds the running sum of tokens in the window so a check
# costs O(expired entries), not O(window).
# KEYS: log (sorted set), tokens (integer)
# ARGV: window_us, rpm, tpm, tokens, member, ttl_ms, admit (1) or only report (0)
# Returns {admitted, now_us, wait_us, requests, tokens} (the last two after an admission, if any).
_SCRIPT = """
local log, total_key = KEYS[1], KEYS[2]
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, member, ttl, admit = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function tokens_of(m) return tonumber(string.match(m, '^(%d+):')) end

-- Drop entries that have left the window (score <= now - window) and their tokens from the sum.
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for _, m in ipairs(expired) do freed = freed + tokens_of(m) end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  redis.call('DECRBY', total_key, freed)
end
local count = redis.call('ZCARD', log)
local total = 0
if count == 0 then
  redis.call('DEL', log, total_key)
else
  total = tonumber(redis.call('GET', total_key) or '0')
end
if not admit then return {0, now, 0, count, total} end

local wait = 0
-- Requests: the entry whose departure leaves rpm - 1 in the window.
if rpm > 0 and count >= rpm then
  local e = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
  wait = tonumber(e[2]) + window - now
end
-- Tokens: walk oldest first until enough have left. A request larger than tpm counts as tpm,
-- so it needs the whole window empty and is then admitted alone.
if tpm > 0 then
  local need = total + math.min(tokens, tpm) - tpm
  local freed, start = 0, 0
  while need > 0 and freed < need do
    local batch = redis.call('ZRANGE', log, start, start + 99, 'WITHSCORES')
    if #batch == 0 then
      -- The sum disagrees with the entries (edited by hand?): repair it and have the client ask again.
      redis.call('SET', total_key, freed, 'KEEPTTL')
      return {0, now, 1000, count, freed}
    end
    for i = 1, #batch, 2 do
      freed = freed + tokens_of(batch[i])
      if freed >= need then
        wait = math.max(wait, tonumber(batch[i + 1]) + window - now)
        break
      end
    end
    start = start + 100
  end
end
if wait > 0 then return {0, now, wait, count, total} end

redis.call('ZADD', log, now, member)
redis.call('INCRBY', total_key, tokens)
redis.call('PEXPIRE', log, ttl)
redis.call('PEXPIRE', total_key, ttl)
return {1, now, 0, count + 1, total + tokens}
"""


class RateLimitTimeout(Exception):
    """A request would have waited longer than the limiter's max_wait."""


class RateLimiter:
    """A sliding-window limit on requests and estimated tokens, shared by all users of one Redis and name.

    Use one name per rate-limited resource (LLM base URL + model): every thread, process and machine
    with that name draws from the same budget. rpm or tpm 0 turns that limit off.
    """

    def __init__(self, connection: redis.Redis, name: str, rpm: int = 0, tpm: int = 0, window: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 max_wait: float | None = None):
        if rpm < 0 or tpm < 0:
            raise ValueError(f"rpm and tpm must be 0 (off) or positive, got rpm={rpm!r} tpm={tpm!r}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.name = name
        self.rpm, self.tpm, self.window = int(rpm), int(tpm), float(window)
        self.max_wait = max_wait
        self.last_admitted: float | None = None  # Redis time (s) of the latest admission, any thread
        self._sleep, self._clock = sleep, clock
        self._keys = [f"{PREFIX}:ratelimit:{name}:log", f"{PREFIX}:ratelimit:{name}:tokens"]
        # The provider counts arrivals, not our admissions: two requests admitted exactly one window apart
        # can arrive less than a window apart after network jitter, so each admission holds its slot a
        # little longer than the window (2 %, 1.2 s of a minute).
        held = self.window * (1 + ARRIVAL_MARGIN)
        self._window_us = max(1, round(held * 1_000_000))
        self._ttl_ms = math.ceil(held * 1000) + KEY_SLACK_MS
        # Off means off: no script, no Redis round trip per request.
        self._script = connection.register_script(_SCRIPT) if self.enabled else None

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def acquire(self, tokens: int = 0) -> float:
        """Block until a request of `tokens` estimated tokens fits both limits; seconds waited."""
        if not self.enabled:
            return 0.0
        tokens = max(0, int(tokens))
        if self.tpm and tokens > self.tpm:
            log.warning("a request of ~%d tokens exceeds the limit of %d tokens per %g s (%s): "
                        "it waits for an empty window and goes alone", tokens, self.tpm, self.window, self.name)
        started = self._clock()
        member = f"{tokens}:{uuid.uuid4().hex}"
        first = True
        while True:
            admitted, now_us, wait_us, _, _ = self._run(tokens, member, admit=True)
            if admitted:
                self.last_admitted = now_us / 1_000_000
                return 0.0 if first else max(0.0, self._clock() - started)
            first = False
            delay = wait_us / 1_000_000
            waited = self._clock() - started
            if self.max_wait is not None and waited + delay > self.max_wait:
                raise RateLimitTimeout(f"rate limit {self.name!r} would hold a request {waited + delay:.1f} s "
                                       f"(max {self.max_wait:g} s)")
            self._sleep(delay + _jitter(delay))

    def __call__(self, body: dict) -> None:
        """The LLM client's before_request hook: wait until this chat request fits."""
        waited = self.acquire(estimate_tokens(body))
        if waited >= 1.0:
            log.debug("rate limit %s held a request %.1f s", self.name, waited)

    def usage(self) -> dict:
        """Requests and estimated tokens admitted in the current window, across all processes."""
        if not self.enabled:
            return {"requests": 0, "tokens": 0}
        _, _, _, requests, tokens = self._run(0, "", admit=False)
        return {"requests": int(requests), "tokens": int(tokens)}

    def _run(self, tokens: int, member: str, *, admit: bool) -> list[int]:
        args = [self._window_us, self.rpm, self.tpm, tokens, member, self._ttl_ms, 1 if admit else 0]
        return [int(v) for v in self._script(keys=self._keys, args=args)]


class ModelRateLimits:
    """The LLM client's before_request hook: each request waits in the limiter of the model it names.

    Projects may choose their own model ("Extra params"), and providers limit per key and model, so the
    limiter is picked per request from its body, not once per process from LLM_MODEL.
    """

    def __init__(self, connection: redis.Redis, base_url: str, rpm: int = 0, tpm: int = 0, **kwargs):
        self._make = lambda model: RateLimiter(connection, limiter_name(base_url, model), rpm=rpm, tpm=tpm,
                                               **kwargs)
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, model: str) -> RateLimiter:
        with self._lock:
            if model not in self._limiters:
                self._limiters[model] = self._make(model)
            return self._limiters[model]

    def __call__(self, body: dict) -> None:
        self.limiter(str(body.get("model") or ""))(body)


def _jitter(delay: float) -> float:
    # Waiters blocked by the same entry would all wake at once and all but one go back to sleep;
    # a little randomness spreads them out. Never zero, so a retry cannot spin.
    return random.uniform(0.001, 0.005 + min(0.25, 0.1 * delay))


def limiter_name(base_url: str, model: str) -> str:
    """The limiter name for one LLM endpoint: providers limit per key and model, so per URL + model."""
    return f"{(base_url or 'https://api.openai.com/v1').rstrip('/')}|{model}"


def estimate_tokens(body: dict) -> int:
    """A cheap, deliberately high estimate of the tokens a chat or completions request may use (prompt + answer)."""
    messages = body.get("messages") or []
    chars = sum(_content_chars(m.get("content") if isinstance(m, dict) else m) for m in messages)
    prompts = body.get("prompt") or []
    prompts = [prompts] if isinstance(prompts, str) else prompts  # echo scoring sends one prompt per label form
    chars += sum(_content_chars(p) for p in prompts)
    answer = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    # ~4 characters per token in English; /3 leaves room for other scripts and punctuation.
    return math.ceil(chars / 3) + 4 * len(messages) + int(answer) * max(1, len(prompts))


def _content_chars(content) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return sum(len(p.get("text") or "") if isinstance(p, dict) else len(str(p)) for p in content)
    return len(str(content))
