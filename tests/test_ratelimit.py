"""The shared rate limiter against a real Redis and the stand-in: paced per second, learned from headers and 429s,
one pace for every process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.model.client import LLMClient
from backend.model.ratelimit import (
    BACKOFF,
    KEY_TTL_S,
    SAFETY,
    ModelRateLimits,
    RateLimiter,
    RateLimitTimeout,
    estimate_tokens,
    limiter_name,
    limits_status,
    parse_duration,
)
from tests.conftest import REPO, llm_settings

pytestmark = pytest.mark.timeout(60)  # a broken limiter may wait forever


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def most_in_window(stamps_us: list[int], window_us: int, weights: list[int] | None = None) -> int:
    """The largest total weight (default: count) of stamps inside any half-open window (t - w, t]."""
    pairs = sorted(zip(stamps_us, weights or [1] * len(stamps_us)))
    best = 0
    for end, _ in pairs:
        best = max(best, sum(w for t, w in pairs if end - window_us < t <= end))
    return best


def admit_all(limiter: RateLimiter, tokens: list[int]) -> tuple[list[int], list[float]]:
    """Acquire for each token count in turn: the moments (us, this clock) it returned, and the waits."""
    stamps, waits = [], []
    for n in tokens:
        waits.append(limiter.acquire(n))
        stamps.append(micros(time.monotonic()))
    return stamps, waits


def test_a_per_minute_limit_is_paced_over_every_second(redis_conn):
    """600 per minute as a provider enforces it (10 in any second): never 11 in a second, never a burst of
    the minute's budget, and close to the full rate."""
    limiter = RateLimiter(redis_conn, "paced", rpm=600)
    started = time.monotonic()
    stamps, waits = admit_all(limiter, [0] * 30)
    elapsed = time.monotonic() - started
    # A window a little shorter than a second: what the client saw, give or take a Redis round trip.
    assert most_in_window(stamps, micros(1.0 - 0.02)) <= 10
    assert elapsed >= 29 / (10 * SAFETY) - 0.1  # spread, not sent at once
    assert elapsed < 29 / (10 * SAFETY) + 1.5  # and not much slower than the pace
    assert waits[0] == 0.0 and max(waits[1:]) > 0.05


def test_tokens_are_paced_and_a_big_request_waits_its_turn(redis_conn):
    limiter = RateLimiter(redis_conn, "tokens", tpm=6000)  # 100 tokens a second
    stamps, waits = admit_all(limiter, [50] * 8)
    assert most_in_window(stamps, micros(1.0 - 0.02), [50] * 8) <= 100
    assert (stamps[-1] - stamps[0]) / 1e6 >= 7 * 0.5 / SAFETY - 0.1
    free = RateLimiter(redis_conn, "tokens-free", rpm=6000)  # no token limit: tokens do not slow it
    started = time.monotonic()
    admit_all(free, [10**6] * 3)
    assert time.monotonic() - started < 0.2


def test_the_limit_comes_from_the_providers_headers_when_none_is_set(redis_conn, fake_llm):
    """No RATE_LIMIT_*: the first answer's x-ratelimit-limit-requests sets the pace for every client."""
    fake_llm.configure(limit_rpm=600, limit_window_s=1, latency_ms=20)
    limits = ModelRateLimits(redis_conn, fake_llm.url)
    clients = [
        LLMClient(llm_settings(fake_llm), before_request=limits, after_response=limits.observe) for _ in range(6)
    ]
    request = {"messages": [{"role": "user", "content": "Is this positive?"}], "max_tokens": 8}
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: clients[i % 6].chat(request), range(36)))
    stats = fake_llm.stats()
    assert stats["rate_limited"] == 0 and stats["by_status"] == {"200": 36}
    assert stats["max_in_window"]["1"] <= 10
    [shown] = limits_status(redis_conn)
    assert (shown["rpm"], shown["rpm_source"], shown["responses_429"]) == (600, "x-ratelimit-limit-requests", 0)


def test_a_lower_header_limit_wins_over_the_setting_and_shows_where_it_came_from(redis_conn):
    limiter = RateLimiter(redis_conn, "both", rpm=1200)
    limiter.acquire(0)
    limiter.observe(200, {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "590"})
    assert limiter.in_force()["rpm"] == 600
    [shown] = [s for s in limits_status(redis_conn) if s["limiter"] == "both"]
    assert (shown["rpm"], shown["rpm_source"]) == (600, "x-ratelimit-limit-requests")
    higher = RateLimiter(redis_conn, "setting-lower", rpm=300)
    higher.acquire(0)
    higher.observe(200, {"x-ratelimit-limit-requests": "600"})
    [shown] = [s for s in limits_status(redis_conn) if s["limiter"] == "setting-lower"]
    assert (shown["rpm"], shown["rpm_source"]) == (300, "RATE_LIMIT_RPM")


def test_a_429_holds_every_client_for_retry_after_and_lowers_the_pace(redis_conn):
    one = RateLimiter(redis_conn, "shared-429", rpm=6000)
    other = RateLimiter(redis_conn, "shared-429", rpm=6000)  # another worker, same Redis and name
    one.acquire(0)
    one.observe(429, {"retry-after": "0.6"})
    started = time.monotonic()
    other.acquire(0)
    assert time.monotonic() - started >= 0.5
    assert other.in_force()["factor"] == pytest.approx(BACKOFF, abs=0.02)
    [shown] = [s for s in limits_status(redis_conn) if s["limiter"] == "shared-429"]
    assert shown["responses_429"] == 1 and shown["lowered_after_429"] and shown["last_429_s_ago"] is not None
    one.observe(429, {"retry-after": "0"})  # the same burst: the pace is lowered once
    assert other.in_force()["factor"] == pytest.approx(BACKOFF, abs=0.02)


def test_remaining_zero_holds_everyone_until_the_reset(redis_conn):
    limiter = RateLimiter(redis_conn, "exhausted", rpm=6000)
    limiter.acquire(0)
    limiter.observe(
        200,
        {
            "x-ratelimit-limit-requests": "6000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "400ms",
        },
    )
    started = time.monotonic()
    limiter.acquire(0)
    assert time.monotonic() - started >= 0.35


def test_with_nothing_known_one_request_goes_first_and_learns(redis_conn):
    limiter = RateLimiter(redis_conn, "learning")
    assert limiter.acquire(0) == 0.0  # the probe
    with pytest.raises(RateLimitTimeout):
        RateLimiter(redis_conn, "learning", max_wait=0.02).acquire(0)  # the others wait for its answer
    limiter.observe(200, {})  # an answer without limits: the provider states none
    assert [limiter.acquire(0) for _ in range(20)] == [0.0] * 20


def test_parse_duration_reads_the_providers_reset_formats():
    assert parse_duration("1s") == 1.0 and parse_duration("20ms") == 0.02
    assert parse_duration("6m0s") == 360.0 and parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("0.5") == 0.5 and parse_duration("soon") is None and parse_duration("") is None


WORKER = """
import json, sys, time
from backend.state.store import connect
from backend.model.ratelimit import RateLimiter
url, name, start_at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
limiter = RateLimiter(connect(url), name, rpm=300)
time.sleep(max(0.0, start_at - time.time()))
stamps = []
for _ in range(count):
    limiter.acquire(0)
    stamps.append(round(time.time() * 1_000_000))
print(json.dumps(stamps))
"""


def test_processes_sharing_a_name_share_one_pace(redis_conn, redis_url):
    start_at = time.time() + 1.0  # every process contends from the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, "shared", str(start_at), "5"],
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=30)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    stamps = [t for out in outputs for t in json.loads(out)]
    assert len(stamps) == 20
    assert most_in_window(stamps, micros(1.0 - 0.05)) <= 5  # 300 per minute: 5 in any second
    # Separate paces would finish in about a second; one shared pace needs 19 intervals of 0.2 s.
    assert (max(stamps) - min(stamps)) / 1e6 >= 19 * 0.2 / SAFETY - 0.2


class NoRedis:
    def __getattr__(self, name):
        raise AssertionError(f"a limiter that is off touched Redis ({name})")


def test_limits_off_never_wait_and_never_touch_redis():
    limiter = RateLimiter(NoRedis(), "off", learn=False)  # type: ignore[arg-type]
    started = time.monotonic()
    assert all(limiter.acquire(10**9) == 0.0 for _ in range(1000))
    limiter({"messages": [{"role": "user", "content": "x" * 10_000}]})
    limiter.observe(429, {"retry-after": "5"})
    assert time.monotonic() - started < 0.1


def test_max_wait_gives_up_instead_of_blocking(redis_conn):
    limiter = RateLimiter(redis_conn, "impatient", rpm=6, max_wait=0.5)
    assert limiter.acquire() == 0.0
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire()
    assert time.monotonic() - started < 0.3  # it knew the wait (~10 s) up front


def test_the_state_key_expires(redis_conn):
    limiter = RateLimiter(redis_conn, "tidy", rpm=10, tpm=1000)
    limiter.acquire(5)
    assert 0 < redis_conn.pttl("fsp:ratelimit:tidy") <= KEY_TTL_S * 1000


def test_estimate_tokens_grows_with_content_and_max_tokens():
    base = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    longer = {**base, "messages": [{"role": "user", "content": "hello " * 300}]}
    more_messages = {**base, "messages": base["messages"] * 3}
    bigger_answer = {**base, "max_tokens": 512}
    assert estimate_tokens(longer) > estimate_tokens(base) + 500  # 1800 chars: ~600 tokens at chars/3
    assert estimate_tokens(more_messages) > estimate_tokens(base)
    assert estimate_tokens(bigger_answer) == estimate_tokens(base) + 512 - 16
    assert estimate_tokens({"messages": base["messages"]}) == estimate_tokens(base) - 16 + 256
    parts = {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "hello " * 300}]}]}
    assert estimate_tokens(parts) == estimate_tokens(longer)


def test_the_hook_paces_chat_requests_as_the_server_sees_them(redis_conn, fake_llm):
    limiter = RateLimiter(redis_conn, limiter_name(fake_llm.url, "fake-llm"), rpm=120, tpm=10_000)  # 2 a second
    client = LLMClient(llm_settings(fake_llm), before_request=limiter, after_response=limiter.observe)
    request = {"messages": [{"role": "user", "content": "Is this positive?"}], "max_tokens": 16}
    started = time.monotonic()
    for _ in range(4):
        client.chat(request)
    assert time.monotonic() - started >= 3 * 0.5 - 0.05  # spread at the pace, not sent at once
    assert fake_llm.stats()["max_in_window"]["1"] <= 2  # as the server saw the arrivals


def test_limiter_names_separate_endpoints_and_models():
    assert limiter_name("", "gpt-4o-mini") == limiter_name("https://api.openai.com/v1/", "gpt-4o-mini")
    assert limiter_name("http://vllm:8000/v1", "a") != limiter_name("http://vllm:8000/v1", "b")
