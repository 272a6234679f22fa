"""Load benchmark on loopback: concurrent /predict clients and webhook bursts against the backend under gunicorn.

Everything runs on 127.0.0.1: a private redis-server, the fake LLM stand-in at --latency-ms, --workers rq
workers, and the backend under gunicorn (2 processes x 16 threads). After a warm-up, --clients threads send
/predict requests for --duration seconds, each for one task (as Label Studio's interactive pre-annotation
does), a mix of cached tasks (labeled during the warm-up) and new ones (--cached-share); halfway through,
--burst ANNOTATION_CREATED webhook events arrive as fast as 32 senders can post them. Every loop is bounded
in count and time and stops by itself.

Prints requests and the no-error count (an error: an exception, a status other than 200, or a task left
without a prediction), p50/p95/p99 latency (all, cached, uncached), the webhook burst's rate and failures,
and the RSS of the backend's process tree and of each worker: cold, after the warm-up ("before"), right after
the load, and after --settle seconds; memory must be flat (growth after the warm-up within 10 % or 64 MB).

Run: python -m benchmarks.bench_load [--clients 50] [--duration 60] [--burst 1000] [--workers 2]
tests/test_load.py runs the same code in a small bounded setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROJECT = "1.1700000000"
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="positive"/><Choice value="negative"/><Choice value="neutral"/></Choices></View>'
)
LABELS = ("positive", "negative", "neutral")
WORDS = {
    "positive": ["love", "great", "happy", "excellent", "wonderful"],
    "negative": ["hate", "awful", "angry", "broken", "terrible"],
    "neutral": ["arrived", "Tuesday", "ordinary", "average", "standard"],
}
THINGS = ["the phone", "the delivery", "the support team", "the update", "the invoice", "the app", "the screen"]
MAX_REQUESTS_PER_CLIENT = 100_000  # a hard cap beside the time limit


def text_for(index: int, rng: random.Random) -> tuple[str, str]:
    label = LABELS[index % 3]
    return f"Ticket {index}: {rng.choice(THINGS)} is {rng.choice(WORDS[label])}, {rng.choice(WORDS[label])}.", label


# ---- memory ---------------------------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_tree_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_kb(current)
        todo.extend(_children(current))
    return total / 1024


# ---- the load -------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"cached": [], "uncached": []})
    errors: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    ok: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1
            else:
                self.ok += 1
                self.latencies[kind].append(seconds)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    if len(values) == 1:
        return {q: round(values[0] * 1000, 1) for q in ("p50", "p95", "p99")}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49] * 1000, 1), "p95": round(cuts[94] * 1000, 1), "p99": round(cuts[98] * 1000, 1)}


def predict_one(client: httpx.Client, task: dict) -> str | None:
    """One /predict for one task; the error kind, or None when it came back labeled."""
    try:
        response = client.post("/predict", json={"tasks": [task], "project": PROJECT, "label_config": CONFIG})
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    results = response.json().get("results") or []
    if len(results) != 1 or not results[0].get("result"):
        return "no prediction"
    return None


def client_loop(
    url: str, stop_at: float, cached: list[dict], fresh: itertools.count, share: float, samples: Samples, seed: int
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= stop_at:
                return
            if cached and rng.random() < share:
                kind, task = "cached", rng.choice(cached)
            else:
                index = next(fresh)
                kind, task = "uncached", {"id": index, "data": {"text": text_for(index, rng)[0]}}
            started = time.perf_counter()
            error = predict_one(client, task)
            samples.record(kind, time.perf_counter() - started, error)


def annotation(index: int, rng: random.Random, flip: bool = False) -> dict:
    text, label = text_for(index, rng)
    label = LABELS[(LABELS.index(label) + 1) % 3] if flip else label
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1},
        "task": {"id": index, "data": {"text": text}},
        "annotation": {
            "id": index,
            "task": index,
            "was_cancelled": False,
            "updated_at": "2026-01-01T00:00:00Z",
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        },
    }


def webhook_burst(url: str, events: int, first_id: int, flip: bool = False, senders: int = 32) -> dict:
    """`events` ANNOTATION_CREATED events posted by `senders` threads; every one must get a 201.
    `flip`: the same tasks annotated again with another label (the demonstrations change, their count does not)."""
    rng = random.Random(first_id)
    bodies = [annotation(first_id + i, rng, flip) for i in range(events)]
    failures: dict[str, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    local = threading.local()

    def send(body):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        started = time.perf_counter()
        try:
            status = local.client.post("/webhook", json=body).status_code
            error = None if status == 201 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        with lock:
            latencies.append(time.perf_counter() - started)
            if error:
                failures[error] = failures.get(error, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        list(pool.map(send, bodies))
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "failed": sum(failures.values()),
        "failures": failures,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds, 1),
        "latency_ms": percentiles(latencies),
    }


def run_load(
    url: str,
    clients: int,
    duration: float,
    burst: int,
    cached_share: float = 0.5,
    cached_pool: int = 200,
    seed: int = 1,
    burst_first: int = 20_000_000,
    flip: bool = False,
) -> dict:
    """The measured phase: clients for `duration` s, a webhook burst halfway. The project must be set up."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=300) as client:
        pool = [{"id": 1_000_000 + i, "data": {"text": text_for(i, rng)[0]}} for i in range(cached_pool)]
        for start in range(0, len(pool), 50):  # label the cached pool (after the warm-up's version moves)
            response = client.post(
                "/predict", json={"tasks": pool[start : start + 50], "project": PROJECT, "label_config": CONFIG}
            )
            response.raise_for_status()
    samples = Samples()
    fresh = itertools.count(10_000_000 + seed * 1_000_000)
    stop_at = time.monotonic() + duration
    threads = [
        threading.Thread(
            target=client_loop, args=(url, stop_at, pool, fresh, cached_share, samples, seed * 1000 + i), daemon=True
        )
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    burst_result = {}
    if burst:
        time.sleep(duration / 2)
        burst_result = webhook_burst(url, burst, burst_first, flip)
    for thread in threads:
        thread.join(duration + 180)
    seconds = time.perf_counter() - started
    every = samples.latencies["cached"] + samples.latencies["uncached"]
    return {
        "clients": clients,
        "duration_s": round(seconds, 1),
        "requests": samples.requests,
        "ok": samples.ok,
        "errors": samples.errors,
        "requests_per_s": round(samples.requests / seconds, 1),
        "latency_ms": {
            "all": percentiles(every),
            "cached": percentiles(samples.latencies["cached"]),
            "uncached": percentiles(samples.latencies["uncached"]),
        },
        "cached_requests": len(samples.latencies["cached"]),
        "uncached_requests": len(samples.latencies["uncached"]),
        "webhook_burst": burst_result,
    }


def setup_project(url: str, demonstrations: int = 12) -> None:
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/setup", json={"project": PROJECT, "schema": CONFIG}).raise_for_status()
        for i in range(demonstrations):
            client.post("/webhook", json=annotation(500_000 + i, rng)).raise_for_status()


def memory(backend_pid: int, worker_pids: list[int]) -> dict:
    return {
        "backend_mb": round(rss_tree_mb(backend_pid), 1),
        "workers_mb": [round(rss_tree_mb(pid), 1) for pid in worker_pids],
    }


def growth(before: dict, after: dict) -> dict:
    return {
        "backend_mb": round(after["backend_mb"] - before["backend_mb"], 1),
        "workers_mb": [round(a - b, 1) for a, b in zip(after["workers_mb"], before["workers_mb"])],
    }


def measure(
    url: str,
    backend_pid: int,
    worker_pids: list[int],
    *,
    clients: int,
    duration: float,
    burst: int,
    warmup: float,
    settle: float,
    cached_share: float = 0.5,
    cached_pool: int = 200,
) -> dict:
    """Warm-up, then the measured load, with RSS before (after the warm-up), after, and after `settle` s.

    The warm-up runs the same clients and the same burst (new tasks annotated), so the project holds as many
    demonstrations before the measured phase as after it; the measured burst annotates those tasks again with
    another label (every event still moves model_version). Growth after the warm-up is then what the load
    leaves behind, not the project's data growing."""
    cold = memory(backend_pid, worker_pids)
    setup_project(url)
    run_load(url, clients, warmup, burst, cached_share, min(cached_pool, 50), seed=7, burst_first=20_000_000)
    before = memory(backend_pid, worker_pids)
    figures = run_load(
        url, clients, duration, burst, cached_share, cached_pool, seed=1, burst_first=20_000_000, flip=True
    )
    after = memory(backend_pid, worker_pids)
    time.sleep(settle)
    settled = memory(backend_pid, worker_pids)
    figures["memory"] = {
        "cold": cold,
        "before": before,
        "after": after,
        f"after_{settle:g}s_settle": settled,
        "growth_since_before": growth(before, settled),
    }
    return figures


def flat(figures: dict, percent: float = 10.0, floor_mb: float = 64.0) -> bool:
    """Memory is flat: each group's growth since the warm-up stays within `percent` % or `floor_mb`."""
    mem = figures["memory"]
    pairs = [(mem["before"]["backend_mb"], mem["growth_since_before"]["backend_mb"])]
    pairs += list(zip(mem["before"]["workers_mb"], mem["growth_since_before"]["workers_mb"]))
    return all(grew <= max(floor_mb, base * percent / 100) for base, grew in pairs)


def start_stack(log_dir: Path, redis_url: str, fake_url: str, workers: int, extra: dict | None = None):
    """rq workers and the backend under gunicorn on loopback; returns (backend proc, url, worker procs)."""
    from backend.processes import backend_env, start_backend, start_workers

    repo = Path(__file__).resolve().parents[1]
    env = {
        k: v
        for k, v in backend_env().items()
        if not k.startswith(("OPENAI_", "LLM_", "LABEL_", "BASIC_AUTH_", "WEBHOOK_", "DEMO_", "PROMPT_"))
    }
    env.update(
        {
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": "sk-bench-load",
            "LLM_MODEL": "fake-llm",
            "QUEUE_NAME": "bench-load",
            "PYTHONPATH": str(repo),
            "LOG_LEVEL": "WARNING",
            "DEMO_SELECTION": "nearest-k",
            "DEMO_K": "8",
            "PREDICT_DEADLINE": "60",
            "WORKER_MAINTENANCE": "5",
        }
    )
    env.update({k: str(v) for k, v in (extra or {}).items()})
    procs = start_workers(workers, log_dir, env, prefix="load-worker")
    _wait_for_workers(redis_url, workers, "bench-load")
    backend, url = start_backend(log_dir, env, workers=2)
    return backend, url, procs


def _wait_for_workers(redis_url: str, count: int, queue: str, timeout: float = 30) -> None:
    import redis
    from rq import Queue, Worker

    connection = redis.Redis.from_url(redis_url)
    deadline = time.time() + timeout
    while Worker.count(queue=Queue(queue, connection=connection)) < count:
        if time.time() > deadline:
            raise RuntimeError(f"{count} rq workers did not register within {timeout} s")
        time.sleep(0.1)


def report(figures: dict) -> str:
    lat = figures["latency_ms"]
    mem = figures["memory"]
    settle_key = next(k for k in mem if k.startswith("after_") and k.endswith("settle"))
    burst = figures["webhook_burst"]
    lines = [
        f"{figures['clients']} clients for {figures['duration_s']} s: {figures['requests']} /predict requests "
        f"({figures['requests_per_s']}/s), {figures['ok']} without error, errors {figures['errors'] or 0}",
        f"  {figures['cached_requests']} cached, {figures['uncached_requests']} uncached (ok requests)",
        *(f"  latency {name}: p50 {v['p50']} ms, p95 {v['p95']} ms, p99 {v['p99']} ms" for name, v in lat.items()),
    ]
    if burst:
        wl = burst["latency_ms"]
        lines.append(
            f"  webhook burst: {burst['events']} events in {burst['seconds']} s ({burst['events_per_s']}/s),"
            f" {burst['failed']} failed; latency p50 {wl['p50']} ms, p95 {wl['p95']} ms, p99 {wl['p99']} ms"
        )
    lines.append(
        f"  RSS backend (gunicorn tree) MB: cold {mem['cold']['backend_mb']}, before {mem['before']['backend_mb']}"
        f", after {mem['after']['backend_mb']}, {settle_key} {mem[settle_key]['backend_mb']}"
    )
    lines.append(
        f"  RSS workers MB: cold {mem['cold']['workers_mb']}, before {mem['before']['workers_mb']}, "
        f"after {mem['after']['workers_mb']}, {settle_key} {mem[settle_key]['workers_mb']}"
    )
    lines.append(
        f"  growth since the warm-up: {mem['growth_since_before']} -> {'flat' if flat(figures) else 'NOT FLAT'}"
    )
    return "\n".join(lines)


def main() -> None:
    from backend.devtools.fake_llm import spawn_fake_llm
    from backend.processes import start_redis, stop_all

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--burst", type=int, default=1000, help="webhook events in the burst halfway through")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--cached-share", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--settle", type=float, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    fake = spawn_fake_llm(latency_ms=args.latency_ms)
    redis_proc, redis_url = start_redis(log_dir)
    procs = [redis_proc]
    try:
        backend, url, workers = start_stack(log_dir, redis_url, fake.url, args.workers)
        procs += [*workers, backend]
        figures = measure(
            url,
            backend.pid,
            [w.pid for w in workers],
            clients=args.clients,
            duration=args.duration,
            burst=args.burst,
            warmup=args.warmup,
            settle=args.settle,
            cached_share=args.cached_share,
        )
        figures["llm"] = {k: fake.stats().get(k) for k in ("requests", "prompt_tokens", "completion_tokens")}
        figures["settings"] = {
            "workers": args.workers,
            "latency_ms": args.latency_ms,
            "web": "gunicorn 2 x 16 threads",
            "cached_share": args.cached_share,
            "logs": str(log_dir),
            "pid": os.getpid(),
        }
        print(report(figures))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        if figures["ok"] != figures["requests"] or (figures["webhook_burst"] or {}).get("failed"):
            raise SystemExit("errors under load")
    finally:
        stop_all(procs)
        fake.stop()


if __name__ == "__main__":
    main()
