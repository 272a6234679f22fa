"""Benchmark: tasks through /predict with rq workers against the fake LLM at 200 ms latency.

Prints tasks/s, the ideal (total concurrency / latency), their ratio (target >= 0.8), the speed-up over
one request at a time (target >= 20x), and p50/p95 /predict latency for one cached task and for one
uncached task minus the LLM latency (target < 20 ms at p50).
Run: python -m benchmarks.bench_queue [--tasks 2000] [--workers 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import redis

from backend.fake_llm import spawn_fake_llm
from backend.processes import backend_env, start_backend, start_redis, start_workers, stop_all
from benchmarks.common import REPO, choices_config, read_jsonl, split_seeds

PROJECT = "1.1700000000"


def wait_for_workers(url: str, count: int, queue: str) -> None:
    from rq import Queue, Worker

    connection = redis.Redis.from_url(url)
    deadline = time.time() + 30
    while Worker.count(queue=Queue(queue, connection=connection)) < count:
        if time.time() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.1)


def predict(client: httpx.Client, url: str, tasks: list[dict], config: str) -> dict:
    response = client.post(url + "/predict", json={"tasks": tasks, "project": PROJECT, "label_config": config},
                           timeout=300)
    response.raise_for_status()
    return response.json()


def annotate(client: httpx.Client, url: str, seeds: list[dict], config: str) -> None:
    client.post(url + "/setup", json={"project": PROJECT, "schema": config}).raise_for_status()
    for i, row in enumerate(seeds, start=1):
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": 10_000_000 + i,
                 "data": {"text": row["text"]}}, "annotation": {"id": i, "task": 10_000_000 + i,
                 "updated_at": "2026-01-01", "result": [{"from_name": "topic", "to_name": "text",
                                                         "type": "choices", "value": {"choices": [row["label"]]}}]}}
        client.post(url + "/webhook", json=event).raise_for_status()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run_stack(args, concurrency: int, workers: int, log_dir: Path):
    fake = spawn_fake_llm(latency_ms=args.latency_ms)
    redis_proc, redis_url = start_redis(log_dir)
    env = backend_env({"REDIS_URL": redis_url, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-bench",
                       "LLM_MODEL": "fake-llm", "LABEL_CONCURRENCY": concurrency, "JOB_CHUNK_SIZE": args.chunk,
                       "QUEUE_NAME": "bench", "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING",
                       "PREDICT_DEADLINE": 250, "DEMO_SELECTION": "nearest-k", "DEMO_K": 8})
    procs = start_workers(workers, log_dir, env, prefix=f"bench-worker-c{concurrency}")
    backend, url = start_backend(log_dir, env, workers=2)
    wait_for_workers(redis_url, workers, "bench")
    return fake, [redis_proc, *procs, backend], url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="LLM calls in flight per worker")
    parser.add_argument("--chunk", type=int, default=128, help="tasks per rq job (JOB_CHUNK_SIZE)")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--sequential-tasks", type=int, default=40)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    seeds, rows = split_seeds(read_jsonl("ag_news_test.jsonl"), 8, args.tasks + args.sequential_tasks
                              + 2 * args.latency_samples)
    config = choices_config(sorted({r["label"] for r in seeds}), "topic")
    tasks = [{"id": i + 1, "data": {"text": r["text"]}} for i, r in enumerate(rows)]
    latency = args.latency_ms / 1000

    fake, procs, url = run_stack(args, args.concurrency, args.workers, log_dir)
    try:
        with httpx.Client() as client:
            annotate(client, url, seeds, config)
            batch = tasks[:args.tasks]
            started = time.perf_counter()
            answer = predict(client, url, batch, config)
            seconds = time.perf_counter() - started
            labeled = sum(1 for r in answer["results"] if r.get("result"))
            rate = len(batch) / seconds
            ideal = args.workers * args.concurrency / latency
            print(f"{len(batch)} tasks in one /predict: {seconds:.1f} s = {rate:.1f} tasks/s "
                  f"({labeled} labeled); ideal {ideal:.0f} tasks/s ({args.workers} workers x {args.concurrency} "
                  f"in flight / {args.latency_ms:g} ms); ratio {rate / ideal:.2f} (target >= 0.8)")
            cached, uncached = [], []
            pool = tasks[args.tasks + args.sequential_tasks:]
            for i in range(args.latency_samples):
                t0 = time.perf_counter()
                predict(client, url, [batch[i % len(batch)]], config)
                cached.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                predict(client, url, [pool[i]], config)
                uncached.append(time.perf_counter() - t0 - latency)
            for name, values in (("cached task", cached), ("uncached task minus LLM latency", uncached)):
                print(f"/predict latency, one {name}: p50 {1000 * percentile(values, 50):.1f} ms, "
                      f"p95 {1000 * percentile(values, 95):.1f} ms (target p50 < 20 ms)")
    finally:
        stop_all(procs)
        fake.stop()

    fake, procs, url = run_stack(args, 1, 1, log_dir)
    try:
        with httpx.Client() as client:
            annotate(client, url, seeds, config)
            sample = tasks[args.tasks:args.tasks + args.sequential_tasks]
            started = time.perf_counter()
            for task in sample:
                predict(client, url, [task], config)
            sequential = len(sample) / (time.perf_counter() - started)
        print(f"one request at a time: {sequential:.2f} tasks/s; speed-up {rate / sequential:.1f}x (target >= 20x)")
    finally:
        stop_all(procs)
        fake.stop()


if __name__ == "__main__":
    main()
