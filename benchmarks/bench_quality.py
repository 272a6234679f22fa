"""Benchmark: the live quality's cost per annotation event and per full rebuild, and what its figures recover.

A simulated production: N pre-labeled tasks of a 6-label config (TREC's labels), each prediction with a score
drawn uniformly from [0.3, 1], kept by its annotator with probability equal to its score (a perfectly
calibrated model), else changed to another label; the predictions come from three model_versions in turn.
Against a private redis-server it prints, for each N:

- review: reading the tasks' annotations and predictions into review records (what a rebuild does once
  Label Studio's two listings are in), per 1,000 tasks;
- refresh: one annotation event's cost once N reviews are stored (replace the task's record, recompute every
  figure from the records, store them);
- the figures: accepted share against the simulated one, ECE (near 0 for a calibrated score), and the
  recommended threshold for QUALITY_TARGET 0.95 with the accepted share and coverage it gives, beside the
  true threshold (0.95 of the kept-at-or-above share reached at the lowest score where P(kept) averages 0.95).
Run: python -m benchmarks.bench_quality [--tasks 1000 10000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from backend.evaluation.live import controls_of, figures, reviews_from_tasks
from backend.labeling.parser import parse_spec
from backend.pipeline import quality
from backend.processes import start_redis
from backend.settings import Settings
from backend.state.store import connect
from benchmarks.common import choices_config

LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
VERSIONS = ["fsp-000000000001", "fsp-000000000002", "fsp-000000000003"]


def result(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def simulated_tasks(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i in range(count):
        predicted, score = rng.choice(LABELS), rng.uniform(0.3, 1.0)
        kept = rng.random() < score
        gold = predicted if kept else rng.choice([x for x in LABELS if x != predicted])
        day = 1 + i * 28 // count
        tasks.append(
            {
                "id": i + 1,
                "data": {"text": f"task {i}"},
                "predictions": [
                    {
                        "id": i + 1,
                        "result": result(predicted),
                        "score": score,
                        "model_version": VERSIONS[i * len(VERSIONS) // count],
                        "created_at": f"2026-02-{day:02d}T08:00:00Z",
                    }
                ],
                "annotations": [{"id": i + 1, "result": result(gold), "created_at": f"2026-02-{day:02d}T12:00:00Z"}],
            }
        )
    return tasks


def true_threshold(target: float) -> float:
    """The lowest t with mean P(kept | score >= t) >= target for scores uniform on [0.3, 1]: (t + 1) / 2."""
    return max(0.3, 2 * target - 1)


def run(count: int, connection, settings: Settings) -> None:
    spec = parse_spec(choices_config(LABELS))
    tasks = simulated_tasks(count)
    started = time.perf_counter()
    found, _ = reviews_from_tasks(spec, tasks)
    review_s = time.perf_counter() - started
    quality.replace_all(connection, 1, found)
    quality.refresh(connection, settings, 1, spec)
    events = 20
    started = time.perf_counter()
    for task in tasks[:events]:
        one, _ = reviews_from_tasks(spec, [task])
        quality.put_task_reviews(connection, 1, [task["id"]], one)
        latest = quality.refresh(connection, settings, 1, spec)
    refresh_ms = (time.perf_counter() - started) / events * 1000
    assert latest["reviewed"] == count
    kept = sum(t["annotations"][0]["result"] == t["predictions"][0]["result"] for t in tasks) / count
    result_ = figures(found, controls_of(spec), settings.quality_target)
    print(
        f"{count:>7,} tasks | review {review_s / count * 1000 * 1000:7.1f} ms per 1,000 | refresh {refresh_ms:8.1f} "
        f"ms per event | accepted {result_['accepted_share']:.3f} (simulated {kept:.3f}) | "
        f"ECE {result_['calibration']['ece']:.3f} | threshold {result_['recommended_threshold']:.3f} "
        f"(true {true_threshold(settings.quality_target):.3f}): accepted "
        f"{result_['recommended_accepted_share']:.3f}, coverage {100 * result_['recommended_coverage']:.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    settings = Settings.from_env({})
    with tempfile.TemporaryDirectory() as logs:
        proc, url = start_redis(Path(logs))
        try:
            connection = connect(url)
            for count in args.tasks:
                connection.flushall()
                run(count, connection, settings)
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
