"""The shared rate limiter against a real Redis: windows hold, limits combine, processes share one budget."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest

from backend.llm import LLMClient
from backend.ratelimit import ARRIVAL_MARGIN, RateLimiter, RateLimitTimeout, estimate_tokens, limiter_name
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


def admit_all(limiter: RateLimiter, tokens: list[int]) -> tuple[list[int], list[float], list[float]]:
    """Acquire for each token count in turn: Redis admission times (us), client return times, waits."""
    admitted, returned, waits = [], [], []
    for n in tokens:
        waits.append(limiter.acquire(n))
        returned.append(time.monotonic())
        admitted.append(micros(limiter.last_admitted))
    return admitted, returned, waits


def test_rpm_holds_in_every_window_and_paces_the_excess(redis_conn):
    limiter = RateLimiter(redis_conn, "rpm", rpm=5, window=2.0)
    started = time.monotonic()
    admitted, returned, waits = admit_all(limiter, [0] * 12)
    elapsed = time.monotonic() - started

    assert most_in_window(admitted, micros(2.0)) <= 5  # Redis's clock, exact
    # The client's clock sees the same, give or take a round trip.
    assert most_in_window([micros(t) for t in returned], micros(2.0 - 0.1)) <= 5
    assert elapsed >= (12 / 5 - 1) * 2.0 - 0.1
    assert elapsed < 3 * 2.0 + 1.0  # three batches: at 0, 2 and 4 s
    assert waits[:5] == [0.0] * 5 and waits[5] > 1.5  # the sixth waits for the first to leave


def test_tpm_alone_limits_tokens_not_requests(redis_conn):
    small = RateLimiter(redis_conn, "tpm-small", tpm=100, window=0.5)
    started = time.monotonic()
    assert all(small.acquire(1) == 0.0 for _ in range(60))  # 60 requests, 60 tokens: no request limit
    assert time.monotonic() - started < 0.4
    assert small.usage() == {"requests": 60, "tokens": 60}

    big = RateLimiter(redis_conn, "tpm-big", tpm=100, window=0.5)
    started = time.monotonic()
    admitted, _, waits = admit_all(big, [40] * 6)
    assert most_in_window(admitted, micros(0.5), [40] * 6) <= 100
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0.4  # the third 40 would make 120
    assert time.monotonic() - started >= 2 * 0.5 - 0.05


def test_rpm_alone_ignores_tokens(redis_conn, caplog):
    limiter = RateLimiter(redis_conn, "rpm-only", rpm=3, window=0.5)
    with caplog.at_level(logging.WARNING, logger="backend.ratelimit"):
        assert [limiter.acquire(10**6) for _ in range(3)] == [0.0] * 3
    assert not caplog.records  # no token limit, so nothing is oversized
    assert limiter.usage() == {"requests": 3, "tokens": 3 * 10**6}
    assert limiter.acquire(10**6) > 0.4


def test_both_limits_whichever_binds_first(redis_conn):
    by_count = RateLimiter(redis_conn, "both-count", rpm=3, tpm=100, window=0.5)
    assert [by_count.acquire(10) for _ in range(3)] == [0.0] * 3  # 30 tokens: only the count is full
    assert by_count.acquire(10) > 0.4

    by_tokens = RateLimiter(redis_conn, "both-tokens", rpm=3, tpm=100, window=0.5)
    assert by_tokens.acquire(60) == 0.0
    assert by_tokens.acquire(60) > 0.4  # 1 request of 3, but 120 tokens of 100
    assert by_tokens.usage() == {"requests": 1, "tokens": 60}


def test_a_request_larger_than_tpm_goes_alone_into_an_empty_window(redis_conn, caplog):
    limiter = RateLimiter(redis_conn, "oversized", tpm=100, window=0.5)
    with caplog.at_level(logging.WARNING, logger="backend.ratelimit"):
        assert limiter.acquire(500) == 0.0  # empty window: admitted at once, or it would wait forever
    assert "exceeds" in caplog.text
    assert limiter.acquire(1) > 0.4  # nothing joins it while it is in the window

    assert limiter.acquire(500) > 0.4  # and it waits for the 1-token request to leave
    assert limiter.usage() == {"requests": 1, "tokens": 500}


WORKER = """
import json, sys, time
from backend.store import connect
from backend.ratelimit import RateLimiter
url, name, start_at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
limiter = RateLimiter(connect(url), name, rpm=6, window=2.0)
time.sleep(max(0.0, start_at - time.time()))
stamps = []
for _ in range(count):
    limiter.acquire(0)
    stamps.append(round(limiter.last_admitted * 1_000_000))
print(json.dumps(stamps))
"""


def test_processes_sharing_a_name_share_one_budget(redis_conn, redis_url):
    start_at = time.time() + 1.0  # every process contends from the same moment
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, redis_url, "shared", str(start_at), "5"],
                              cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [proc.communicate(timeout=20)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    stamps = [t for out in outputs for t in json.loads(out)]

    assert len(stamps) == 20
    assert most_in_window(stamps, micros(2.0)) <= 6
    # Separate budgets would admit all 20 at once; one shared budget needs at least three more windows.
    assert (max(stamps) - min(stamps)) / 1e6 >= 3 * 2.0 - 0.1


class NoRedis:
    def __getattr__(self, name):
        raise AssertionError(f"a limiter that is off touched Redis ({name})")


def test_limits_off_never_wait_and_never_touch_redis():
    limiter = RateLimiter(NoRedis(), "off")  # type: ignore[arg-type]
    started = time.monotonic()
    assert all(limiter.acquire(10**9) == 0.0 for _ in range(1000))
    limiter({"messages": [{"role": "user", "content": "x" * 10_000}]})
    assert time.monotonic() - started < 0.1
    assert limiter.usage() == {"requests": 0, "tokens": 0}


def test_max_wait_gives_up_instead_of_blocking(redis_conn):
    limiter = RateLimiter(redis_conn, "impatient", rpm=1, window=5.0, max_wait=0.5)
    assert limiter.acquire() == 0.0
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire()
    assert time.monotonic() - started < 0.3  # it knew the wait (~5 s) up front
    assert limiter.usage()["requests"] == 1  # the refused request takes no slot


def test_keys_expire_and_an_empty_window_leaves_nothing(redis_conn):
    limiter = RateLimiter(redis_conn, "tidy", rpm=10, tpm=1000, window=0.3)
    limiter.acquire(5)
    keys = [b"fsp:ratelimit:tidy:log", b"fsp:ratelimit:tidy:tokens"]
    assert sorted(redis_conn.scan_iter("fsp:ratelimit:tidy:*")) == keys
    assert all(0 < redis_conn.pttl(k) <= 300 * (1 + ARRIVAL_MARGIN) + 1 + 1000 for k in keys)
    time.sleep(0.35)
    assert limiter.usage() == {"requests": 0, "tokens": 0}
    assert not list(redis_conn.scan_iter("fsp:ratelimit:*"))


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


def test_the_hook_acquires_the_estimate_of_each_chat_request(redis_conn, fake_llm):
    limiter = RateLimiter(redis_conn, limiter_name(fake_llm.url, "fake-llm"), rpm=2, tpm=10_000, window=1.2)
    client = LLMClient(llm_settings(fake_llm), before_request=limiter)
    request = {"messages": [{"role": "user", "content": "Is this positive?"}], "max_tokens": 16}
    started = time.monotonic()
    for _ in range(3):
        client.chat(request)
    assert time.monotonic() - started >= 1.1  # the third waited for the first to leave the window
    assert fake_llm.stats()["max_in_window"]["1"] <= 2  # as the server saw the arrivals
    body = fake_llm.requests()[-1]["body"]
    assert limiter.usage() == {"requests": 1, "tokens": estimate_tokens(body)}


def test_limiter_names_separate_endpoints_and_models():
    assert limiter_name("", "gpt-4o-mini") == limiter_name("https://api.openai.com/v1/", "gpt-4o-mini")
    assert limiter_name("http://vllm:8000/v1", "a") != limiter_name("http://vllm:8000/v1", "b")
