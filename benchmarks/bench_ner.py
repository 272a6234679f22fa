"""Benchmark: named entities on WNUT-17 through the fake LLM; span precision/recall/F1 on character offsets.

Demonstrations: the first `--seeds` sentences with their entities; evaluated: the next `--tasks` (200).
Gold entities (token indexes) are converted to character offsets in " ".join(tokens). Checks that every
produced span's text equals text[start:end]. Run: python -m benchmarks.bench_ner
"""

from __future__ import annotations

import argparse
from collections import Counter

from backend.fake_llm import spawn_fake_llm
from backend.labeler import Labeler, label_many
from backend.labeling.examples import Example, canonical
from backend.labeling.results import structured_regions
from backend.labeling.spec import parse_spec
from backend.llm import LLMClient
from benchmarks.common import fake_settings, read_jsonl

TYPES = ("person", "group", "location", "creative-work", "product", "corporation")
CONFIG = ('<View><Text name="text" value="$text"/><Labels name="entities" toName="text">'
          + "".join(f'<Label value="{t}"/>' for t in TYPES) + "</Labels></View>")


def char_spans(row: dict) -> set[tuple[int, int, str]]:
    """Gold entities as (start, end, type) character offsets in the space-joined tokens."""
    starts, position = [], 0
    for token in row["tokens"]:
        starts.append(position)
        position += len(token) + 1
    spans = set()
    for entity in row["label"]:
        first, last = entity["start"], entity["end"] - 1
        spans.add((starts[first], starts[last] + len(row["tokens"][last]), entity["type"]))
    return spans


def demonstration(row: dict, index: int) -> Example:
    text = row["text"]
    entities = [{"text": text[s:e], "label": t} for s, e, t in sorted(char_spans(row))]
    return Example(text, (), "seed", f"wnut:{index}", canonical({"entities": entities}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--k", type=int, default=16, help="nearest demonstrations per prompt")
    args = parser.parse_args()
    rows = read_jsonl("wnut17_test.jsonl")
    seeds, tasks = rows[:args.seeds], rows[args.seeds:args.seeds + args.tasks]
    spec = parse_spec(CONFIG)
    server = spawn_fake_llm()
    try:
        settings = fake_settings(server.url, selection="nearest-k", selection_k=args.k, concurrency=16)
        labeler = Labeler(spec, [demonstration(r, i) for i, r in enumerate(seeds)], settings, LLMClient(settings))
        outcomes = dict(label_many(labeler, ((i, {"text": r["text"]}) for i, r in enumerate(tasks)), 16))
    finally:
        server.stop()
    counts, bad_text, dropped = Counter(), 0, Counter()
    for i, row in enumerate(tasks):
        outcome = outcomes[i]
        predicted = set()
        if outcome.ok:
            for region in structured_regions(spec, outcome.values, row["text"]):
                value = region["value"]
                bad_text += row["text"][value["start"]:value["end"]] != value["text"]
                predicted.add((value["start"], value["end"], value["labels"][0]))
            for name, note in (outcome.notes or {}).items():
                if isinstance(note, dict):
                    dropped.update(note)
        gold = char_spans(row)
        counts["tp"] += len(predicted & gold)
        counts["fp"] += len(predicted - gold)
        counts["fn"] += len(gold - predicted)
        counts["failed"] += not outcome.ok
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    print(f"WNUT-17: {len(tasks)} sentences, {len(seeds)} demonstration sentences (nearest {args.k} per prompt), "
          f"fake LLM")
    print(f"spans: tp {counts['tp']} fp {counts['fp']} fn {counts['fn']}  precision {precision:.3f}  "
          f"recall {recall:.3f}  F1 {f1:.3f}  failed answers {counts['failed']}")
    print(f"entities dropped while checking: {dict(dropped) or 'none'}")
    print(f"spans whose text differs from text[start:end]: {bad_text} (must be 0)")
    if bad_text:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
