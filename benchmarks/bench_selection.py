"""Benchmark: demonstration selection on AG News, TREC and GoEmotions (../shared/eval-data).

Model-free (the default): for each task, the share of the demonstrations its prompt gets (nearest-k, as
`label` builds the prompt) that carry the task's true label, and the share of tasks for which any does; by
TF-IDF, the bundled local model, API embeddings (the fake server's stand-in vectors over HTTP) and, when the
package is installed, wordllama (not a dependency: the comparison the local model was chosen on). Seeds are
drawn per label reproducibly (from single-label rows for GoEmotions), tasks from the rest.

--llm: the older table through the fake LLM: prompt tokens per task, requests, wall time and the fake
server's proxy accuracy per selection setting, on AG News and TREC.

Run: python -m benchmarks.bench_selection [--llm]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backend.devtools.fake_llm import FakeLLM, spawn_fake_llm
from backend.labeling.parser import parse_spec
from backend.model import local_embeddings
from backend.model.client import LLMClient
from backend.model.embeddings import Embedder, MemoryVectorCache
from backend.model.labeler import Labeler, label_many
from backend.model.options import prompt_for
from benchmarks.common import as_examples, choices_config, fake_settings, read_jsonl, row_labels, split_seeds
from benchmarks.selection_quality import Quality, chance

DATA_SETS = [("AG News", "ag_news_test.jsonl"), ("TREC", "trec_test.jsonl"), ("GoEmotions", "goemotions_test.jsonl")]
SIMILARITIES = [  # (row name, EMBEDDING_MODEL)
    ("TF-IDF", "tfidf"),
    ("local model (USE multilingual v3)", ""),
    ("API embeddings (fake stand-in)", "fake-embed"),
]
WORDLLAMA = "wordllama:l2_supercat-256"

SETTINGS = [
    ("all", {"selection": "all"}),
    ("auto", {"selection": "auto"}),
    ("nearest-8 (local model)", {"selection": "nearest-k", "selection_k": 8}),
    ("nearest-8 (TF-IDF)", {"selection": "nearest-k", "selection_k": 8, "embedding_model": "tfidf"}),
    ("balanced-8", {"selection": "balanced-k", "selection_k": 8}),
    ("nearest-8, batches of 8", {"selection": "nearest-k", "selection_k": 8, "batch_size": 8}),
    ("nearest-8 by API embeddings", {"selection": "nearest-k", "selection_k": 8, "embedding_model": "fake-embed"}),
    ("mmr-8 (local model)", {"selection": "mmr-k", "selection_k": 8}),
]


# ---- model-free: do the chosen demonstrations carry the task's label? ------------------------------------


class WordLlamaSource:
    """wordllama's bundled l2_supercat 256-d model as an embedding source (loaded from its package folder
    with downloads off: wordllama 0.4.0 looks for its tokenizer under tokenizer/, the wheel has tokenizers/)."""

    def __init__(self):
        import wordllama

        folder = Path(wordllama.__file__).parent
        self.model = wordllama.WordLlama.load(cache_dir=folder, disable_download=True)

    def embed(self, texts, model=""):
        return list(self.model.embed(list(texts))), 0


def wordllama_source():
    try:
        return WordLlamaSource()
    except ImportError:
        return None


def chosen_demonstrations(labeler: Labeler, texts: list[str]) -> tuple[list[list], float]:
    """The demonstrations each text's prompt gets, and the seconds spent embedding the texts."""
    started = time.perf_counter()
    vectors = labeler.query_vectors(texts)
    seconds = time.perf_counter() - started
    by_ref = {e.ref: e for e in labeler.examples}  # a prepared call names its demonstrations by ref
    return [
        [by_ref[ref] for ref in labeler.prepare(text, vector).demonstrations] for text, vector in zip(texts, vectors)
    ], seconds


def measure(labeler: Labeler, rows: list[dict]) -> tuple[Quality, float]:
    quality = Quality()
    chosen, seconds = chosen_demonstrations(labeler, [r["text"] for r in rows])
    for row, demonstrations in zip(rows, chosen):
        quality.add([e.labels for e in demonstrations], row_labels(row))
    return quality, seconds


def quality_table(args) -> None:
    """One row per data set and similarity: means over `args.draws` seed draws (lowest and highest draw of
    "carry label" beside them)."""
    print(
        f"{'data set':<10} {'pool':>4} {'tasks':>5} {'labels':>6}  {'similarity':<34} {'carry label':>11} "
        f"{'(draws)':>13} {'covered':>7} {'embed texts/s':>13}"
    )
    started = time.perf_counter()
    local_embeddings.shared().load()
    loads = [f"local model loaded in {time.perf_counter() - started:.1f} s"]
    started = time.perf_counter()
    wordllama = wordllama_source()
    if wordllama is not None:
        loads.append(f"wordllama in {time.perf_counter() - started:.1f} s")
    with FakeLLM() as server:
        for name, file in DATA_SETS:
            table: dict[str, list] = {}
            for draw in range(args.draws):
                seeds, rows = split_seeds(read_jsonl(file), args.per_label, args.tasks, seed=13 + draw)
                labels = sorted({label for r in seeds for label in row_labels(r)})
                spec = parse_spec(choices_config(labels, multiple=any(isinstance(r["label"], list) for r in rows)))
                examples = as_examples(seeds)
                head = f"{name:<10} {len(examples):>4} {len(rows):>5} {len(labels):>6}"
                random_k = Quality()
                for row in rows:
                    random_k.add_expected(*chance([e.labels for e in examples], row_labels(row), args.k))
                table.setdefault(f"chance (random {args.k})", []).append((random_k, None))
                rows_by = list(SIMILARITIES)
                if wordllama is not None:
                    rows_by.append(("wordllama (l2_supercat 256-d)", WORDLLAMA))
                for label, model in rows_by:
                    settings = fake_settings(
                        server.url, selection="nearest-k", selection_k=args.k, embedding_model=model
                    )
                    client = LLMClient(settings)
                    prompt = prompt_for(settings, {})
                    # A fresh cache per row and draw, so every text is embedded here and the speed is real.
                    source = {WORDLLAMA: wordllama, "": local_embeddings.shared()}.get(model, client)
                    embedder = (
                        Embedder(source, MemoryVectorCache(), prompt.embedding_model)
                        if prompt.uses_embeddings
                        else None
                    )
                    started = time.perf_counter()
                    labeler = Labeler(spec, examples, settings, client, prompt, embedder=embedder)
                    pool_seconds = time.perf_counter() - started
                    quality, seconds = measure(labeler, rows)
                    speed = (len(examples) + len(rows)) / (pool_seconds + seconds) if labeler.embedder else None
                    table.setdefault(label, []).append((quality, speed))
            for label, results in table.items():
                shares = [q.share for q, _ in results]
                coverage = sum(q.coverage for q, _ in results) / len(results)
                speeds = [s for _, s in results if s]
                spread = f"{min(shares):.3f}-{max(shares):.3f}" if len(shares) > 1 else ""
                speed = f"{sum(speeds) / len(speeds):>13.0f}" if speeds else f"{'-':>13}"
                print(
                    f"{head}  {label:<34} {sum(shares) / len(shares):>11.3f} {spread:>13} {coverage:>7.3f} {speed}",
                    flush=True,
                )
    print(
        "; ".join(loads)
        + (". wordllama is not installed: `pip install wordllama` adds its row" if wordllama is None else "")
    )


# ---- through the fake LLM: tokens, requests, proxy accuracy ---------------------------------------------


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
    return {
        "tokens_per_task": chat_tokens / len(rows),
        "requests": stats["requests"],
        "embedding_tokens": stats["prompt_tokens"] - chat_tokens,
        "choice": labeler.choice.selection.describe(),
        "seconds": seconds,
        "accuracy": correct / len(rows),
        "failed": sum(not o.ok for o in outcomes.values()),
    }


def llm_table(args) -> None:
    server = spawn_fake_llm(latency_ms=args.latency_ms)
    print(
        f"{'data set':<9} {'setting':<28} {'tasks':>5} {'tokens/task':>11} {'vs all':>7} {'requests':>8} "
        f"{'seconds':>7} {'accuracy':>8}"
    )
    try:
        for name, file in DATA_SETS[:2]:
            seeds, rows = split_seeds(read_jsonl(file), args.llm_per_label, args.tasks)
            spec = parse_spec(choices_config(sorted({r["label"] for r in seeds})))
            examples = as_examples(seeds)
            baseline = None
            for setting, overrides in SETTINGS:
                result = run(server, rows, examples, spec, overrides, args.concurrency)
                baseline = baseline or result["tokens_per_task"]
                shown = f"{setting} -> {result['choice']}" if setting == "auto" else setting
                print(
                    f"{name:<9} {shown:<28} {len(rows):>5} {result['tokens_per_task']:>11.0f} "
                    f"{result['tokens_per_task'] / baseline:>6.0%} {result['requests']:>8} "
                    f"{result['seconds']:>7.1f} {result['accuracy']:>8.3f}"
                    + (f"  (+{result['embedding_tokens']} embedding tokens)" if result["embedding_tokens"] else "")
                    + (f"  ({result['failed']} failed)" if result["failed"] else ""),
                    flush=True,
                )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--per-label", type=int, default=16, help="seeds per label of the model-free measure")
    parser.add_argument("--k", type=int, default=8, help="demonstrations per prompt (nearest-k)")
    parser.add_argument("--draws", type=int, default=3, help="seed draws the model-free figures average over")
    parser.add_argument("--llm", action="store_true", help="also label through the fake LLM (slower)")
    parser.add_argument("--llm-per-label", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    quality_table(args)
    if args.llm:
        print()
        llm_table(args)


if __name__ == "__main__":
    main()
