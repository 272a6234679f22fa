"""How many times the /predict miss path builds (fits to the token budget) the prompt of one task, and the
overhead /predict adds to the model's latency.

    python -m benchmarks.bench_prompt_builds [--tasks 200] [--batch 1]

Everything runs in this process (a private redis-server, the stand-in LLM at 0 ms, the Service of a web
process and the backend's rq worker), so that every call to the budget fit is counted wherever it happens.
Prints: fits per task on a miss, then the /predict latency p50/p95 of one-task requests (uncached and cached):
with a stand-in at 0 ms, that is the backend's own overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def count_fits() -> dict:
    """Wrap the budget's fit everywhere it was imported; returns the live counter."""
    import backend.labeling.budget as budget

    original = budget.fit
    counter = {"fits": 0}

    def counted(*args, **kwargs):
        counter["fits"] += 1
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if module is not None and getattr(module, "fit", None) is original:
            module.fit = counted
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1, help="BATCH_SIZE (1: one task per model call)")
    args = parser.parse_args()

    from backend.devtools.fake_llm import FakeLLM
    from backend.processes import start_redis, stop_all

    log_dir = Path(tempfile.mkdtemp(prefix="fsp-bench-builds-"))
    redis_proc, redis_url = start_redis(log_dir)
    try:
        with FakeLLM() as fake:
            os.environ.update(
                {
                    "REDIS_URL": redis_url,
                    "OPENAI_BASE_URL": fake.url,
                    "OPENAI_API_KEY": "sk-bench",
                    "LLM_MODEL": "fake-llm",
                    "SEEDS_PATH": str(REPO / "seeds" / "support"),
                    "QUEUE_NAME": "fewshot-bench",
                    "BATCH_SIZE": str(args.batch),
                    "LLM_ANSWER_MODE": "json",
                }
            )
            run(args.tasks)
    finally:
        stop_all([redis_proc])


def run(tasks: int) -> None:
    from rq import Queue

    import backend.pipeline.jobs  # noqa: F401  (loaded now, so that its imported `fit` is wrapped too)
    from backend.pipeline.worker import FewshotWorker
    from backend.settings import Settings
    from backend.state import store
    from backend.web.service import Service

    settings = Settings.from_env()
    connection = store.connect(settings.redis_url)
    service = Service(settings, connection)
    config = (REPO / "seeds" / "support" / "config.xml").read_text()
    counter = count_fits()
    from backend.pipeline.jobs import preload

    state = preload()
    queue = Queue(settings.queue_name, connection=connection)

    def predict(task_ids: list[int]) -> float:
        body = {
            "project": 1,
            "label_config": config,
            "tasks": [
                {"id": t, "data": {"ticket": f"ticket {t}: my invoice shows a charge twice, order {t * 7}"}}
                for t in task_ids
            ],
        }
        started = time.perf_counter()
        answer = service.predict(body)
        elapsed = time.perf_counter() - started
        assert all(r.get("result") for r in answer["results"]), (answer, elapsed, service.status().get("projects"))
        return elapsed

    def with_worker(task_ids: list[int]) -> float:
        box: dict = {}
        thread = threading.Thread(target=lambda: box.update(t=predict(task_ids)))
        thread.start()
        worker = FewshotWorker([queue], connection=connection, settings=settings, calls=state.calls)
        while thread.is_alive():
            worker.work(burst=True, logging_level="WARNING")
            time.sleep(0.002)
        thread.join()
        return box["t"]

    with_worker([10_000_000])  # warm-up: the project's context in both sides
    counter["fits"] = 0
    misses = [with_worker([t]) for t in range(1, tasks + 1)]
    fits_per_task = counter["fits"] / tasks
    hits = [predict([t]) for t in range(1, tasks + 1)]
    ms = lambda values, q: 1000 * statistics.quantiles(values, n=100)[q - 1]  # noqa: E731
    print(f"{tasks} one-task /predict requests, stand-in at 0 ms, BATCH_SIZE={settings.batch_size}")
    print(f"  prompt builds (budget fits) per task on a miss: {fits_per_task:.2f}")
    print(f"  /predict uncached: p50 {ms(misses, 50):.1f} ms, p95 {ms(misses, 95):.1f} ms (web + queue + worker)")
    print(f"  /predict cached:   p50 {ms(hits, 50):.1f} ms, p95 {ms(hits, 95):.1f} ms")


if __name__ == "__main__":
    main()
