"""Rate limits shared by every worker through one Redis, paced the way providers enforce them, and learned
from the provider's own answers.

Providers state limits per minute but enforce them over short windows ("60,000 requests/minute may be
enforced as 1,000 requests/second", OpenAI): a minute's budget spent in its first seconds draws 429s. So a
limit here is a pace, not a count: requests (and estimated tokens, the expected completion included, as
OpenAI counts max_tokens) are spread evenly, a generic cell rate algorithm (GCRA) on Redis's clock, with a
burst no larger than what keeps every 1-second window within the limit. The pace runs at SAFETY of the
limit, which leaves room for the network to shift arrivals.

The limit in force is the lower of RATE_LIMIT_RPM / RATE_LIMIT_TPM and what the provider's headers say
(x-ratelimit-limit-requests / -tokens); x-ratelimit-remaining-* at 0 holds every worker until the reset. A
429 holds every worker for its Retry-After and lowers the pace (x BACKOFF), which then recovers by
RECOVERY_PER_S of the limit per second. With no limit configured and none learned yet, one request at a
time goes out until the first answer shows whether the provider sends limits at all.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping

import redis

from backend.state.redis_replies import text_hash
from backend.state.store import PREFIX

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # what a request without max_tokens is assumed to spend on its answer
SAFETY = 0.97  # the pace, as a share of the limit in force
BURST_S = 0.5 * (1 / SAFETY - 1)  # half the room SAFETY leaves in a second; the rest absorbs arrival jitter
BACKOFF = 0.9  # a 429 multiplies the pace by this (at most once per BACKOFF_GAP_S): 0.59 after 5 in a row
BACKOFF_GAP_S = 1.0  # 429s of one burst lower the pace once
MIN_FACTOR = 0.1
RECOVERY_PER_S = 0.02  # after a 429 the pace climbs back by 2 % of the limit per second
DEFAULT_RETRY_S = 1.0  # a 429 without Retry-After holds everyone this long
PROBE_S = 5.0  # learning: a first request that has not answered within this long lets another one go
KEY_TTL_S = 3600  # the shared state vanishes after an hour without requests

# Admission. KEYS: state hash. ARGV: rpm, tpm (configured, 0: none), tokens, safety, burst_us, probe_us,
# recovery per us, ttl_ms, admit (1) or only report (0).
# Returns {admitted, wait_us, learn (1: nobody has told the limits yet: report the next answer's headers),
#          rpm in force, tpm in force, factor x 1e6}.
_ADMIT = """
local key = KEYS[1]
local rpm_cfg, tpm_cfg, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local safety, burst, probe = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local recovery, ttl, admit = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', key, 'tat_r', 'tat_t', 'learned_rpm', 'learned_tpm', 'factor', 'factor_at',
                     'hold_until', 'seen', 'probe_until')
local tat_r, tat_t = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local learned_rpm, learned_tpm = tonumber(h[3] or '0'), tonumber(h[4] or '0')
local factor, factor_at = tonumber(h[5] or '1'), tonumber(h[6] or '0')
local hold, seen, probe_until = tonumber(h[7] or '0'), h[8], tonumber(h[9] or '0')
factor = math.min(1, factor + (now - factor_at) * recovery)
local function lower(a, b)
  if a > 0 and b > 0 then return math.min(a, b) end
  return math.max(a, b)
end
local rpm, tpm = lower(rpm_cfg, learned_rpm), lower(tpm_cfg, learned_tpm)
local learn = seen and 0 or 1
local figures = {rpm, tpm, math.floor(factor * 1000000)}
if not admit then return {0, 0, learn, figures[1], figures[2], figures[3]} end
redis.call('HSET', key, 'cfg_rpm', rpm_cfg, 'cfg_tpm', tpm_cfg)
redis.call('PEXPIRE', key, ttl)
if hold > now then return {0, hold - now, learn, figures[1], figures[2], figures[3]} end
if rpm == 0 and tpm == 0 then
  if seen then return {1, 0, 0, 0, 0, figures[3]} end
  -- Nothing known yet: one request at a time until an answer tells (or PROBE_S passes).
  if probe_until > now then return {0, math.min(probe_until - now, 50000), 1, 0, 0, figures[3]} end
  redis.call('HSET', key, 'probe_until', now + probe)
  return {1, 0, 1, 0, 0, figures[3]}
end
local wait = 0
local interval_r, interval_t = 0, 0
if rpm > 0 then
  interval_r = 60000000 / (rpm * safety * factor)
  local tat = math.max(tat_r, now)
  if tat - now > burst then wait = tat - burst - now end
end
if tpm > 0 then
  interval_t = 60000000 / (tpm * safety * factor)
  local tat = math.max(tat_t, now)
  if tat - now > burst then wait = math.max(wait, tat - burst - now) end
end
if wait > 0 then return {0, math.ceil(wait), learn, figures[1], figures[2], figures[3]} end
if rpm > 0 then redis.call('HSET', key, 'tat_r', math.floor(math.max(tat_r, now) + interval_r)) end
if tpm > 0 then redis.call('HSET', key, 'tat_t', math.floor(math.max(tat_t, now) + tokens * interval_t)) end
return {1, 0, learn, figures[1], figures[2], figures[3]}
"""

# An answer's news. KEYS: state hash. ARGV: status, limit_r, remaining_r, reset_r_us, limit_t, remaining_t,
# reset_t_us, retry_us (-1: none sent), backoff, backoff_gap_us, min_factor, recovery per us, default_retry_us,
# ttl_ms. (-1 in a header field: the header was not sent.)
_OBSERVE = """
local key = KEYS[1]
local status = tonumber(ARGV[1])
local limit_r, remaining_r, reset_r = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local limit_t, remaining_t, reset_t = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local retry, backoff, gap = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local min_factor, recovery, default_retry, ttl = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]),
                                                 tonumber(ARGV[14])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', key, 'seen', 1, 'probe_until', 0)
if limit_r >= 0 then redis.call('HSET', key, 'learned_rpm', limit_r) end
if limit_t >= 0 then redis.call('HSET', key, 'learned_tpm', limit_t) end
local hold = tonumber(redis.call('HGET', key, 'hold_until') or '0')
if remaining_r == 0 and reset_r > 0 then hold = math.max(hold, now + reset_r) end
if remaining_t == 0 and reset_t > 0 then hold = math.max(hold, now + reset_t) end
if status == 429 then
  redis.call('HINCRBY', key, 'n429', 1)
  redis.call('HSET', key, 'last429', now)
  local h = redis.call('HMGET', key, 'factor', 'factor_at')
  local factor, factor_at = tonumber(h[1] or '1'), tonumber(h[2] or '0')
  if now - factor_at >= gap then
    factor = math.min(1, factor + (now - factor_at) * recovery)
    redis.call('HSET', key, 'factor', tostring(math.max(min_factor, factor * backoff)), 'factor_at', now)
  end
  if retry < 0 then retry = default_retry end
  hold = math.max(hold, now + retry)
end
redis.call('HSET', key, 'hold_until', hold)
redis.call('PEXPIRE', key, ttl)
return 1
"""


class RateLimitTimeout(Exception):
    """A request would have waited longer than the limiter's max_wait."""


class RateLimiter:
    """The pace of one rate-limited resource (an LLM endpoint and model), shared by every thread, process and
    machine that uses the same Redis and name.

    rpm / tpm are the configured limits (0: none; the provider's headers may still set one). With learn
    False and no limit configured the limiter is off and never touches Redis.
    """

    def __init__(
        self,
        connection: redis.Redis,
        name: str,
        rpm: int = 0,
        tpm: int = 0,
        learn: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_wait: float | None = None,
    ):
        if rpm < 0 or tpm < 0:
            raise ValueError(f"rpm and tpm must be 0 (off) or positive, got rpm={rpm!r} tpm={tpm!r}")
        self.name = name
        self.rpm, self.tpm, self.learn = int(rpm), int(tpm), bool(learn)
        self.max_wait = max_wait
        self._sleep, self._clock = sleep, clock
        self.key = state_key(name)
        self._needs_report = True  # report the next answer (the shared state may not know the limits)
        self._last_limits: tuple[int, int] | None = None
        # Off means off: no script, no Redis round trip per request.
        self._admit = connection.register_script(_ADMIT) if self.enabled else None
        self._observe = connection.register_script(_OBSERVE) if self.enabled else None

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm or self.learn)

    def acquire(self, tokens: int = 0) -> float:
        """Block until a request of `tokens` estimated tokens fits the pace; seconds waited."""
        if not self.enabled:
            return 0.0
        tokens = max(0, int(tokens))
        started = self._clock()
        first = True
        while True:
            admitted, wait_us, learn = self._run(tokens, admit=True)[:3]
            if learn:
                self._needs_report = True
            if admitted:
                return 0.0 if first else max(0.0, self._clock() - started)
            first = False
            delay = wait_us / 1_000_000
            waited = self._clock() - started
            if self.max_wait is not None and waited + delay > self.max_wait:
                raise RateLimitTimeout(
                    f"rate limit {self.name!r} would hold a request {waited + delay:.1f} s (max {self.max_wait:g} s)"
                )
            self._sleep(delay + _jitter(delay))

    def __call__(self, body: dict) -> None:
        """The LLM client's before_request hook: wait until this request fits."""
        waited = self.acquire(estimate_tokens(body))
        if waited >= 1.0:
            log.debug("rate limit %s held a request %.1f s", self.name, waited)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """An answer arrived: learn the limits its headers state, hold everyone on remaining 0, and on a 429
        hold everyone for Retry-After and lower the pace. Only news costs a Redis call."""
        if not self.enabled:
            return
        news = read_headers(headers)
        limits = (news["limit_r"], news["limit_t"])
        exhausted = news["remaining_r"] == 0 or news["remaining_t"] == 0
        if status != 429 and not exhausted and not self._needs_report and limits == self._last_limits:
            return
        self._needs_report = False
        self._last_limits = limits
        retry = news["retry_us"]
        args = [
            status,
            news["limit_r"],
            news["remaining_r"],
            news["reset_r_us"],
            news["limit_t"],
            news["remaining_t"],
            news["reset_t_us"],
            retry,
            BACKOFF,
            int(BACKOFF_GAP_S * 1e6),
            MIN_FACTOR,
            RECOVERY_PER_S / 1e6,
            int(DEFAULT_RETRY_S * 1e6),
            KEY_TTL_S * 1000,
        ]
        assert self._observe is not None  # only called while enabled
        self._observe(keys=[self.key], args=args)
        if status == 429:
            log.warning(
                "rate limit %s: the provider answered 429; every worker waits %.1f s and slows down",
                self.name,
                (retry if retry >= 0 else DEFAULT_RETRY_S * 1e6) / 1e6,
            )

    def in_force(self) -> dict:
        """The limits in force right now (configured or learned, after any 429 backoff)."""
        if not self.enabled:
            return {"rpm": 0, "tpm": 0, "factor": 1.0}
        _, _, _, rpm, tpm, factor = self._run(0, admit=False)
        return {"rpm": rpm, "tpm": tpm, "factor": factor / 1e6}

    def _run(self, tokens: int, *, admit: bool) -> list[int]:
        args = [
            self.rpm,
            self.tpm,
            tokens,
            SAFETY,
            BURST_S * 1e6,
            int(PROBE_S * 1e6),
            RECOVERY_PER_S / 1e6,
            KEY_TTL_S * 1000,
            1 if admit else 0,
        ]
        assert self._admit is not None  # only called while enabled
        return [int(v) for v in self._admit(keys=[self.key], args=args)]


class ModelRateLimits:
    """The LLM client's hooks: each request waits in the limiter of the model it names, and each answer
    reports to it.

    Projects may choose their own model ("Extra params"), and providers limit per key and model, so the
    limiter is picked per request from its body, not once per process from LLM_MODEL.
    """

    def __init__(self, connection: redis.Redis, base_url: str, rpm: int = 0, tpm: int = 0, **kwargs):
        self._make = lambda model: RateLimiter(connection, limiter_name(base_url, model), rpm=rpm, tpm=tpm, **kwargs)
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, model: str) -> RateLimiter:
        with self._lock:
            if model not in self._limiters:
                self._limiters[model] = self._make(model)
            return self._limiters[model]

    def __call__(self, body: dict) -> None:
        self.limiter(str(body.get("model") or ""))(body)

    def observe(self, body: dict, status: int, headers: Mapping[str, str]) -> None:
        self.limiter(str(body.get("model") or "")).observe(status, headers)


def state_key(name: str) -> str:
    return f"{PREFIX}:ratelimit:{name}"


def limits_status(connection: redis.Redis) -> list[dict]:
    """Every limiter's state for /status: the limits in force, where they came from, the 429s seen."""
    shown = []
    now = time.time()
    for key in sorted(connection.scan_iter(f"{PREFIX}:ratelimit:*", count=1000)):
        if connection.type(key) != b"hash":
            continue
        raw = text_hash(connection.hgetall(key))
        cfg_rpm, cfg_tpm = int(raw.get("cfg_rpm") or 0), int(raw.get("cfg_tpm") or 0)
        learned_rpm, learned_tpm = int(raw.get("learned_rpm") or 0), int(raw.get("learned_tpm") or 0)
        factor_at = int(raw.get("factor_at") or 0) / 1e6
        factor = (
            min(1.0, float(raw.get("factor") or 1) + max(0.0, now - factor_at) * RECOVERY_PER_S) if factor_at else 1.0
        )
        rpm, rpm_source = _in_force(cfg_rpm, learned_rpm, "RATE_LIMIT_RPM", "x-ratelimit-limit-requests")
        tpm, tpm_source = _in_force(cfg_tpm, learned_tpm, "RATE_LIMIT_TPM", "x-ratelimit-limit-tokens")
        last429 = int(raw.get("last429") or 0) / 1e6
        shown.append(
            {
                "limiter": key.decode()[len(f"{PREFIX}:ratelimit:") :],
                "rpm": rpm,
                "rpm_source": rpm_source,
                "tpm": tpm,
                "tpm_source": tpm_source,
                # the pace: SAFETY of the limits, lowered after 429s while it recovers
                "pace": round(SAFETY * factor, 3),
                "lowered_after_429": factor < 0.999,
                "responses_429": int(raw.get("n429") or 0),
                "last_429_s_ago": round(now - last429, 1) if last429 else None,
                "held_for_s": round(max(0.0, int(raw.get("hold_until") or 0) / 1e6 - now), 2),
            }
        )
    return shown


def _in_force(configured: int, learned: int, setting: str, header: str) -> tuple[int, str]:
    if configured and learned:
        return (configured, setting) if configured <= learned else (learned, header)
    if configured:
        return configured, setting
    if learned:
        return learned, header
    return 0, "none"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Seconds from a reset header: "1s", "6m0s", "20ms", "1h2m3.5s", or a plain number of seconds."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def read_headers(headers: Mapping[str, str]) -> dict:
    """The rate-limit news in an answer's headers (OpenAI's x-ratelimit-*; Retry-After); -1 where absent."""

    def number(name: str) -> int:
        try:
            return max(0, int(float(headers.get(name) or "")))
        except ValueError:
            return -1

    def duration_us(name: str) -> int:
        seconds = parse_duration(headers.get(name))
        return -1 if seconds is None else int(seconds * 1e6)

    retry = -1
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1_000_000)):
        value = headers.get(name)
        if value:
            try:
                retry = int(max(0.0, float(value)) * scale)
                break
            except ValueError:
                continue
    return {
        "limit_r": number("x-ratelimit-limit-requests"),
        "remaining_r": number("x-ratelimit-remaining-requests"),
        "reset_r_us": duration_us("x-ratelimit-reset-requests"),
        "limit_t": number("x-ratelimit-limit-tokens"),
        "remaining_t": number("x-ratelimit-remaining-tokens"),
        "reset_t_us": duration_us("x-ratelimit-reset-tokens"),
        "retry_us": retry,
    }


def _jitter(delay: float) -> float:
    # Waiters blocked by the same slot would all wake at once and all but one go back to sleep; a little
    # randomness spreads them out. Small: a waiter that wakes late leaves its slot unused (the pace is lost),
    # and the burst tolerance (BURST_S) lets it come a little early instead. Never zero, so a retry cannot spin.
    return random.uniform(0.0005, 0.002 + min(0.05, 0.02 * delay))


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
