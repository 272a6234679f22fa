"""Benchmark: demonstration selection and batching on AG News and TREC through the fake LLM.

For each data set: 32 seeds per label drawn reproducibly (fewer where a label has fewer rows), up to 1,000
tasks from the rest; per setting: prompt tokens per task (the server's usage), requests, wall time and the
proxy accuracy of the fake in-context server. Run: python -m benchmarks.bench_selection
"""

from __future__ import annotations

import argparse
import time

from backend.fake_llm import spawn_fake_llm
from backend.labeler import Labeler, label_many
from backend.labeling.spec import parse_spec
from backend.llm import LLMClient
from benchmarks.common import as_examples, choices_config, fake_settings, read_jsonl, split_seeds

SETTINGS = [
    ("all", {"selection": "all"}),
    ("nearest-8", {"selection": "nearest-k", "selection_k": 8}),
    ("balanced-8", {"selection": "balanced-k", "selection_k": 8}),
    ("nearest-8, batches of 8", {"selection": "nearest-k", "selection_k": 8, "batch_size": 8}),
    ("nearest-8 by embeddings", {"selection": "nearest-k", "selection_k": 8, "embedding_model": "fake-embed"}),
    ("mmr-8 by embeddings", {"selection": "mmr-k", "selection_k": 8, "embedding_model": "fake-embed"}),
]


def run(server, rows, examples, spec, overrides, concurrency) -> dict:
    settings = fake_settings(server.url, concurrency=concurrency, **overrides)
    labeler = Labeler(spec, examples, settings, LLMClient(settings))
    server.reset()
    started = time.perf_counter()
    outcomes = dict(label_many(labeler, ((i, {"text": r["text"]}) for i, r in enumerate(rows)), concurrency))
    seconds = time.perf_counter() - started
    stats = server.stats()
    correct = sum(outcomes[i].labels == (r["label"],) for i, r in enumerate(rows))
    # Chat prompt tokens as the server reported them per answer; embedding input is counted apart.
    chat_tokens = sum(o.prompt_tokens for o in outcomes.values())
    return {"tokens_per_task": chat_tokens / len(rows), "requests": stats["requests"],
            "embedding_tokens": stats["prompt_tokens"] - chat_tokens,
            "seconds": seconds, "accuracy": correct / len(rows),
            "failed": sum(not o.ok for o in outcomes.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--per-label", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    server = spawn_fake_llm(latency_ms=args.latency_ms)
    print(f"{'data set':<9} {'setting':<24} {'tasks':>5} {'tokens/task':>11} {'vs all':>7} {'requests':>8} "
          f"{'seconds':>7} {'accuracy':>8}")
    try:
        for name, file in (("AG News", "ag_news_test.jsonl"), ("TREC", "trec_test.jsonl")):
            seeds, rows = split_seeds(read_jsonl(file), args.per_label, args.tasks)
            spec = parse_spec(choices_config(sorted({r["label"] for r in seeds})))
            examples = as_examples(seeds)
            baseline = None
            for setting, overrides in SETTINGS:
                result = run(server, rows, examples, spec, overrides, args.concurrency)
                baseline = baseline or result["tokens_per_task"]
                print(f"{name:<9} {setting:<24} {len(rows):>5} {result['tokens_per_task']:>11.0f} "
                      f"{result['tokens_per_task'] / baseline:>6.0%} {result['requests']:>8} "
                      f"{result['seconds']:>7.1f} {result['accuracy']:>8.3f}"
                      + (f"  (+{result['embedding_tokens']} embedding tokens)" if result["embedding_tokens"] else "")
                      + (f"  ({result['failed']} failed)" if result["failed"] else ""), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
