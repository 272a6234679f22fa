"""Benchmark: label 500 AG News rows through the fake LLM at 100 ms latency, at concurrency 1 and 16.

Prints rows/s at each concurrency and their ratio (target: at least 10x). Run: python benchmarks/bench_label.py
"""

from __future__ import annotations

import argparse
import time

from backend.devtools.fake_llm import spawn_fake_llm
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, label_many
from benchmarks.common import as_examples, choices_config, fake_settings, read_jsonl, split_seeds


def run(url: str, rows, examples, spec, concurrency: int) -> tuple[float, float]:
    settings = fake_settings(url, concurrency=concurrency)
    labeler = Labeler(spec, examples, settings, LLMClient(settings))
    started = time.perf_counter()
    outcomes = dict(label_many(labeler, ((i, {"text": r["text"]}) for i, r in enumerate(rows)), concurrency))
    seconds = time.perf_counter() - started
    correct = sum(outcomes[i].labels == (r["label"],) for i, r in enumerate(rows))
    failed = sum(not o.ok for o in outcomes.values())
    print(
        f"concurrency {concurrency:>3}: {len(rows)} rows in {seconds:6.1f} s = {len(rows) / seconds:6.1f} rows/s "
        f"(failed {failed}, fake-server accuracy {correct / len(rows):.2f})",
        flush=True,
    )
    return len(rows) / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--per-label", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    seeds, queries = split_seeds(read_jsonl("ag_news_test.jsonl"), args.per_label, args.rows)
    spec = parse_spec(choices_config(sorted({r["label"] for r in seeds}), "topic"))
    examples = as_examples(seeds)
    print(f"AG News: {len(queries)} rows, {len(examples)} demonstrations, fake LLM latency {args.latency_ms:g} ms")
    server = spawn_fake_llm(latency_ms=args.latency_ms)
    try:
        rates = [run(server.url, queries, examples, spec, c)[0] for c in args.concurrency]
    finally:
        server.stop()
    print(
        f"speed-up concurrency {args.concurrency[-1]} vs {args.concurrency[0]}: {rates[-1] / rates[0]:.1f}x "
        f"(target >= 10x)"
    )


if __name__ == "__main__":
    main()
