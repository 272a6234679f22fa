"""A bounded load test on loopback: benchmarks/bench_load.py's code in a small setting.

10 clients send /predict requests (cached and new tasks) for 5 s to the backend under gunicorn, with 2 real
rq workers and the fake LLM at 50 ms; a 200-event webhook burst arrives halfway. No request may fail, and the
RSS growth of the backend and of each worker after the warm-up must stay under a generous bound. The figures
are printed (run with -s to see them; the full-size run is `python -m benchmarks.bench_load`).
"""

from __future__ import annotations

import json

import pytest

from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import stop_all
from benchmarks.bench_load import flat, measure, report, start_stack
from tests.conftest import clean_redis

CLIENTS, DURATION_S, BURST = 10, 5, 200
MAX_GROWTH_MB = 150  # generous: the full benchmark holds its growth within 10 % or 64 MB


@pytest.fixture
def stack(redis_url, logs_dir):
    clean_redis(redis_url)
    fake = spawn_fake_llm(latency_ms=50)
    backend, url, workers = start_stack(logs_dir / "load", redis_url, fake.url, workers=2)
    try:
        yield {"url": url, "backend": backend, "workers": workers, "fake": fake}
    finally:
        stop_all([*workers, backend])
        fake.stop()


def test_predict_and_webhook_burst_under_load(stack, capsys):
    figures = measure(
        stack["url"],
        stack["backend"].pid,
        [w.pid for w in stack["workers"]],
        clients=CLIENTS,
        duration=DURATION_S,
        burst=BURST,
        warmup=3,
        settle=2,
        cached_pool=50,
    )
    with capsys.disabled():
        print("\n" + report(figures))
        print(json.dumps({k: figures[k] for k in ("requests", "ok", "errors", "latency_ms")}))
    assert figures["requests"] >= CLIENTS, figures  # every client got answers
    assert figures["ok"] == figures["requests"] and not figures["errors"], figures["errors"]
    assert figures["uncached_requests"] > 0 and figures["cached_requests"] > 0
    burst = figures["webhook_burst"]
    assert burst["events"] == BURST and burst["failed"] == 0, burst
    growth = figures["memory"]["growth_since_before"]
    assert growth["backend_mb"] < MAX_GROWTH_MB and all(g < MAX_GROWTH_MB for g in growth["workers_mb"]), figures[
        "memory"
    ]
    assert flat(figures, percent=50, floor_mb=MAX_GROWTH_MB)
    assert stack["backend"].alive() and all(w.alive() for w in stack["workers"])
