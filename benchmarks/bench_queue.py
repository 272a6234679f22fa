"""Benchmark: throughput through the rq workers against the in-flight ideal, and provider rate limits kept.

Part 1, in one run: 300, 1,200 and 10,000 tasks (sizes configurable) through `label --redis-url` (the CLI as a
subprocess, its start-up included) and through one /predict each (gunicorn), with 2 workers x LABEL_CONCURRENCY
8 against the stand-in at --latency-ms, with retries and messy answers in the mix (500s, malformed and
out-of-set answers). The in-flight ideal is requests x latency / calls in flight: the time the model alone
would need for the requests the run made; the figure is ideal / elapsed, from the command's launch to its
exit as a user times it (targets: >= 0.9 for 1,200 and 10,000, >= 0.8 for 300). For `label --redis-url` it
also prints the fraction without the command's start-up (from the first model request to the exit). A
short /predict first (not measured) lets the shared limiter learn that the stand-in sends no rate-limit
headers: until an endpoint's first answer it lets one request out at a time, once per Redis, not per run.

Part 2: a stand-in enforcing 600 requests per minute as 10 per 1-second window (quantized, as providers do)
and sending x-ratelimit-* headers; 600 tasks through 2 workers, once with RATE_LIMIT_RPM=600 and once with
no RATE_LIMIT_* (the headers only). Prints requests per second achieved (between the first and the last
request the stand-in let in), the 429s received and the share of the limit used (targets: <= 1 % 429s,
>= 95 % of the limit).

Run: python -m benchmarks.bench_queue [--sizes 300,1200,10000] [--latency-ms 500] [--skip-limits]
     [--skip-throughput]   (all of it: about 16 minutes on a 2-core machine; --sizes 300,1200: about 3)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis

from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import backend_env, start_backend, start_redis, start_workers, stop_all
from benchmarks.common import REPO, choices_config, read_jsonl, split_seeds

PROJECT = "1.1700000000"
MESSY = {"rate_500": 0.005, "rate_malformed": 0.02, "rate_out_of_set": 0.01}  # retries and messy answers


def wait_for_workers(url: str, count: int, queue: str) -> None:
    from rq import Queue, Worker

    connection = redis.Redis.from_url(url)
    deadline = time.time() + 60
    while Worker.count(queue=Queue(queue, connection=connection)) < count:
        if time.time() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.1)


class Stack:
    """A stand-in, a private Redis, rq workers and (for /predict) the backend."""

    def __init__(self, log_dir: Path, workers: int, concurrency: int, web: bool, env: dict | None = None, **knobs):
        self.fake = spawn_fake_llm(**knobs)
        self.redis, self.redis_url = start_redis(log_dir)
        self.env = backend_env(
            {
                "REDIS_URL": self.redis_url,
                "OPENAI_BASE_URL": self.fake.url,
                "OPENAI_API_KEY": "sk-bench",
                "LLM_MODEL": "fake-llm",
                "LABEL_CONCURRENCY": concurrency,
                "QUEUE_NAME": "bench",
                "PYTHONPATH": str(REPO),
                "LOG_LEVEL": "WARNING",
                "PREDICT_DEADLINE": 900,
                "WORKER_WAIT": 120,
                **(env or {}),
            }
        )
        self.procs = [self.redis, *start_workers(workers, log_dir, self.env, prefix=f"bench-worker-{id(self)}")]
        self.url = ""
        if web:
            backend, self.url = start_backend(log_dir, self.env, workers=1)
            self.procs.append(backend)
        wait_for_workers(self.redis_url, workers, "bench")

    def model_requests(self) -> int:
        stats = self.fake.stats()["by_endpoint"]
        return stats.get("/v1/chat/completions", 0) + stats.get("/v1/completions", 0)

    def stop(self) -> None:
        stop_all(self.procs)
        self.fake.stop()


def first_request(stack: Stack, stop: threading.Event) -> list[float]:
    """Watch the stand-in from a thread; the list gets the perf_counter time of the next model request."""
    before, seen = stack.model_requests(), []

    def watch() -> None:
        while not stop.is_set() and stack.model_requests() == before:
            time.sleep(0.02)
        seen.append(time.perf_counter())

    threading.Thread(target=watch, daemon=True).start()
    return seen


def label_file(stack: Stack, tmp: Path, config: Path, seeds: Path, texts: list[str]) -> tuple[float, int, float]:
    """`label --redis-url` as a user runs it; (seconds from launch to exit, rows labeled, seconds from the
    first model request to exit)."""
    source, out = tmp / f"in-{len(texts)}.jsonl", tmp / f"out-{len(texts)}.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    stop = threading.Event()
    first = first_request(stack, stop)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.commands.cli",
            "label",
            "--config",
            str(config),
            "--seeds",
            str(seeds),
            "--input",
            str(source),
            "--output",
            str(out),
            "--no-progress",
            "--redis-url",
            stack.redis_url,
        ],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    ended = time.perf_counter()
    stop.set()
    if done.returncode not in (0, 1):
        raise SystemExit(f"label failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return ended - started, sum(1 for r in rows if not r.get("error")), ended - (first[0] if first else started)


def predict(stack: Stack, config: str, texts: list[str], first_id: int) -> tuple[float, int]:
    tasks = [{"id": first_id + i, "data": {"text": t}} for i, t in enumerate(texts)]
    started = time.perf_counter()
    response = httpx.post(
        stack.url + "/predict", json={"tasks": tasks, "project": PROJECT, "label_config": config}, timeout=1200
    )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, sum(1 for r in response.json()["results"] if r.get("result"))


def annotate(url: str, seeds: list[dict], config: str) -> None:
    httpx.post(url + "/setup", json={"project": PROJECT, "schema": config}, timeout=60).raise_for_status()
    for i, row in enumerate(seeds, start=1):
        event = {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 1},
            "task": {"id": 10_000_000 + i, "data": {"text": row["text"]}},
            "annotation": {
                "id": i,
                "task": 10_000_000 + i,
                "updated_at": "2026-01-01",
                "result": [
                    {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [row["label"]]}}
                ],
            },
        }
        httpx.post(url + "/webhook", json=event, timeout=60).raise_for_status()


def unique_texts(rows: list[dict], count: int, tag: str) -> list[str]:
    """`count` task texts never seen before in this run (the cache must not answer them)."""
    return [f"{rows[i % len(rows)]['text']} ({tag} #{i})" for i in range(count)]


def throughput(args, log_dir: Path, seeds: list[dict], rows: list[dict]) -> None:
    in_flight = args.workers * args.concurrency
    latency = args.latency_ms / 1000
    labels = sorted({r["label"] for r in seeds})
    config = choices_config(labels, "topic")
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-files-"))
    (tmp / "config.xml").write_text(config)
    seed_dir = tmp / "seeds"
    seed_dir.mkdir()
    (seed_dir / "seeds.jsonl").write_text(
        "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in seeds)
    )
    stack = Stack(log_dir, args.workers, args.concurrency, web=True, latency_ms=args.latency_ms, **MESSY)
    print(
        f"{args.workers} workers x LABEL_CONCURRENCY {args.concurrency} = {in_flight} calls in flight; stand-in "
        f"at {args.latency_ms:g} ms with {MESSY}; ideal = requests x latency / {in_flight}",
        flush=True,
    )
    try:
        annotate(stack.url, seeds, config)
        # The first answer of a new endpoint tells the shared limiter whether the provider sends rate-limit headers,
        # and until then one request goes out at a time (once per Redis, not per run): by default the first
        # measured run pays it, with the workers' first project context; --warm-up leaves both out.
        if args.warm_up:
            predict(stack, config, unique_texts(rows, 2 * in_flight, "warm-up"), 900_000_000)
        first_id = 1
        for size in args.sizes:
            for path in ("label --redis-url", "/predict"):
                texts = unique_texts(rows, size, f"{path} {size}")
                before = stack.model_requests()
                working = 0.0
                if path == "/predict":
                    seconds, labeled = predict(stack, config, texts, first_id)
                    first_id += size
                else:
                    seconds, labeled, working = label_file(stack, tmp, tmp / "config.xml", seed_dir, texts)
                requests = stack.model_requests() - before
                ideal = requests * latency / in_flight
                without = f" ({ideal / working:.2f} without its start-up)" if working else ""
                print(
                    f"{size:>6} tasks via {path:<17} {seconds:7.1f} s, {requests} requests, {labeled} labeled; "
                    f"ideal {ideal:6.1f} s; fraction of the in-flight ideal {ideal / seconds:.2f}{without}",
                    flush=True,
                )
    finally:
        stack.stop()


def limits(args, log_dir: Path, rows: list[dict], seeds: list[dict]) -> None:
    labels = sorted({r["label"] for r in seeds})
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-limits-"))
    (tmp / "config.xml").write_text(choices_config(labels, "topic"))
    seed_dir = tmp / "seeds"
    seed_dir.mkdir()
    (seed_dir / "seeds.jsonl").write_text(
        "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in seeds)
    )
    per_s = args.limit_rpm / 60
    print(
        f"\nprovider limit {args.limit_rpm} requests/minute enforced as {per_s:g} per 1-s window, with "
        f"x-ratelimit-* headers; {args.limit_tasks} tasks, {args.workers} workers x {args.concurrency}, "
        f"stand-in at {args.limit_latency_ms:g} ms",
        flush=True,
    )
    for name, env in (("RATE_LIMIT_RPM set", {"RATE_LIMIT_RPM": args.limit_rpm}), ("headers only", {})):
        stack = Stack(
            log_dir,
            args.workers,
            args.concurrency,
            web=False,
            env=env,
            latency_ms=args.limit_latency_ms,
            limit_rpm=args.limit_rpm,
            limit_window_s=1,
        )
        try:
            texts = unique_texts(rows, args.limit_tasks, f"limit {name}")
            seconds, labeled, _ = label_file(stack, tmp, tmp / "config.xml", seed_dir, texts)
            log = [r for r in stack.fake.requests() if r["path"] in ("/v1/chat/completions", "/v1/completions")]
            refused = sum(1 for r in log if r["status"] == 429)
            taken = sorted(r["t"] for r in log if r["status"] != 429)
            span = taken[-1] - taken[0] if len(taken) > 1 else float("nan")
            rate = (len(taken) - 1) / span
            print(
                f"{name:<18}: {len(log)} requests, {refused} 429s ({100 * refused / len(log):.2f} %), "
                f"{rate:.2f} req/s while running = {100 * rate / per_s:.1f} % of the limit; {labeled} labeled "
                f"in {seconds:.1f} s (start-up included: {len(taken) / seconds:.2f} req/s)",
                flush=True,
            )
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,1200,10000", type=lambda v: [int(x) for x in v.split(",") if x])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="LABEL_CONCURRENCY of each worker")
    parser.add_argument("--latency-ms", type=float, default=500)
    parser.add_argument("--limit-rpm", type=int, default=600)
    parser.add_argument("--limit-tasks", type=int, default=600)
    parser.add_argument("--limit-latency-ms", type=float, default=200)
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="run an unmeasured /predict first (the limiter's one-time probe of a new endpoint, the workers' first "
        "project context); by default the first measured run pays them, as a fresh deployment does",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-limits", action="store_true")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    seeds, rows = split_seeds(read_jsonl("ag_news_test.jsonl"), 8, 5000)
    if not args.skip_throughput:
        throughput(args, log_dir, seeds, rows)
    if not args.skip_limits:
        limits(args, log_dir, rows, seeds)
    print(f"logs: {log_dir}")


if __name__ == "__main__":
    main()
