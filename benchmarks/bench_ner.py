"""Benchmark: named entities on WNUT-17 through the fake LLM; span precision/recall/F1 per prompt template.

Demonstrations: the first `--seeds` sentences that have entities; evaluated: the next `--tasks` sentences (200),
with or without entities. Gold spans come from the file's token indexes through the seed row reader
(labeling/rows.py), scores from the evaluation's span metrics (exact and overlap matching). Each template is
run against the same demonstrations; the gazetteer baseline (every entity text seen in the demonstrations,
marked where it stands) needs no model. Checks that every produced span's text equals text[start:end].

The stand-in answers with the entities of the demonstrations it is shown whose text occurs in the query, so
the figures measure the plumbing (offsets, selection, parsing), not how well a model reads a template: the
README says what real models reach. Run: python -m benchmarks.bench_ner
"""

from __future__ import annotations

import argparse

from backend.devtools.fake_llm import spawn_fake_llm
from backend.evaluation.baselines import StructuredBaseline
from backend.evaluation.control_metrics import summarize
from backend.labeling.examples import Example, canonical
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import DEFAULT_TEMPLATE, SPAN_TEMPLATE
from backend.labeling.results import structured_regions
from backend.labeling.rows import read_values
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, label_many
from benchmarks.common import fake_settings, read_jsonl

TYPES = ("person", "group", "location", "creative-work", "product", "corporation")
CONFIG = (
    '<View><Text name="text" value="$text"/><Labels name="entities" toName="text">'
    + "".join(f'<Label value="{t}"/>' for t in TYPES)
    + "</Labels></View>"
)
TEMPLATES = {
    "span (default)": SPAN_TEMPLATE,
    "classic": DEFAULT_TEMPLATE,
    "classic, entities": "{text} [SEP] The entities in the above text are {label}",
}


def gold(row: dict, spec, index: int) -> Example:
    """The row's entities (token indexes) read as every seed and gold file is."""
    values = read_values(row["label"], spec, row["text"], row["tokens"], f"wnut17_test.jsonl:{index + 1}")
    return Example(row["text"], (), "seed", f"wnut:{index}", canonical(values))


def run(spec, seeds: list[Example], tasks: list[Example], url: str, k: int, template: str) -> tuple[list, int]:
    settings = fake_settings(url, selection="nearest-k", selection_k=k, concurrency=16, template=template)
    labeler = Labeler(spec, seeds, settings, LLMClient(settings))
    outcomes = dict(label_many(labeler, ((i, {"text": t.text}) for i, t in enumerate(tasks)), 16))
    predicted, bad_text = [], 0
    for i, task in enumerate(tasks):
        outcome = outcomes[i]
        if not outcome.ok:
            predicted.append(None)
            continue
        for region in structured_regions(spec, outcome.values, task.text):
            value = region["value"]
            bad_text += task.text[value["start"] : value["end"]] != value["text"]
        predicted.append(outcome.values.get("entities", []))
    return predicted, bad_text


def report(name: str, summary: dict, failed: int) -> None:
    exact, overlap = summary["exact"], summary["overlap"]
    print(
        f"{name:<20} exact P {exact['precision']:.3f} R {exact['recall']:.3f} F1 {exact['f1']:.3f}  "
        f"overlap F1 {overlap['f1']:.3f}  macro-F1 {exact['macro_f1'] or 0:.3f}  "
        f"sentences right {summary['exact_match']:.3f}  failed {failed}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=400, help="demonstration sentences (those with entities)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--k", type=int, default=16, help="nearest demonstrations per prompt")
    args = parser.parse_args()
    spec = parse_spec(CONFIG)
    rows = [gold(r, spec, i) for i, r in enumerate(read_jsonl("wnut17_test.jsonl"))]
    seeds = [e for e in rows[: args.seeds] if e.has_answer]
    tasks = rows[args.seeds : args.seeds + args.tasks]
    golds = [t.answer["entities"] for t in tasks]
    print(
        f"WNUT-17: {len(tasks)} sentences ({sum(bool(g) for g in golds)} with entities, "
        f"{sum(map(len, golds))} entities), {len(seeds)} demonstration sentences, nearest {args.k} per prompt, "
        "FAKE stand-in LLM"
    )
    server = spawn_fake_llm()
    bad, summaries = 0, {}
    try:
        for name, template in TEMPLATES.items():
            predicted, bad_text = run(spec, seeds, tasks, server.url, args.k, template)
            bad += bad_text
            summaries[name] = summarize("Labels", list(TYPES), golds, predicted)
            report(name, summaries[name], sum(p is None for p in predicted))
    finally:
        server.stop()
    baseline = StructuredBaseline(spec.controls, seeds)
    report(
        "gazetteer (no LLM)",
        summarize("Labels", list(TYPES), golds, [baseline.answer(None, t.text)["entities"] for t in tasks]),
        0,
    )
    print(
        "per label, span template (exact F1 / overlap F1 / support):  "
        + "  ".join(
            f"{label} {row['f1']:.2f}/{summaries['span (default)']['overlap']['per_label'][label]['f1']:.2f}/"
            f"{row['support']}"
            for label, row in summaries["span (default)"]["exact"]["per_label"].items()
        )
    )
    print(f"spans whose text differs from text[start:end]: {bad} (must be 0)")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
