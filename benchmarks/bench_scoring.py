"""Benchmark: label choice and score against a server whose answers follow a declared distribution over the labels.

Five label sets x 100 tasks (texts and demonstrations from ../shared/eval-data); each task gets a random
truth: P(label) (a flat Dirichlet), each label's mass split over case and leading-space forms, a leading
phrase or closing period on some answers, the end of the answer hidden (OpenAI) on 70 % of them and shown
(vLLM) on the rest. The fake LLM's reference mode answers with real cl100k tokens, greedily, with exact
top_logprobs. For every mode (json, logprobs, text) and scoring method (answer at LLM_TOP_LOGPROBS, echo)
it prints argmax agreement and the absolute error of the score against the declared probability of the
chosen label, over the tasks where the argmax is recoverable from the shown alternatives
(reference.analyse: the declared margin exceeds twice the label mass the shown alternatives cannot
attribute) and over all of them. Targets: 100 % agreement where recoverable, error <= 0.01. "null score":
the alternatives could not settle the argmax, so the parsed label stands without a score.
Run: python -m benchmarks.bench_scoring [--tasks 100] [--top-logprobs 20]
"""

from __future__ import annotations

import argparse
import logging
import random
import time

from backend.devtools.fake_llm import spawn_fake_llm
from backend.devtools.fake_llm.reference import Truth, analyse
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, label_many
from benchmarks.common import choices_config, fake_settings, read_jsonl

# name -> (labels, eval-data file the texts come from)
LABEL_SETS = {
    "sst2": (["Positive", "Negative"], "sst2_test.jsonl"),
    "ag_news": (["World", "Sports", "Business", "Sci/Tech"], "ag_news_test.jsonl"),
    "trec": (["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], "trec_test.jsonl"),
    "prefixes": (["Sci", "Sci/Tech", "World", "World News", "Neuroscience", "Neurology"], "ag_news_test.jsonl"),
    "support": (["Technical issue", "Billing", "Feature request", "Réclamation", "Other"], "goemotions_test.jsonl"),
}
RUNS = [("json", "answer"), ("logprobs", "answer"), ("text", "answer"), ("logprobs", "echo")]
DEMOS_PER_LABEL = 2


def random_truth(labels: list[str], rng: random.Random) -> dict:
    weights = {label: rng.gammavariate(1.0, 1.0) for label in labels}
    forms = {}
    for label in labels:
        spellings = list(dict.fromkeys([label, label.lower(), label.upper(), " " + label, " " + label.lower()]))
        chosen = rng.sample(spellings, rng.randint(1, 3))
        forms[label] = {form: rng.uniform(0.2, 1.0) for form in [label] + [s for s in chosen if s != label]}
    shapes = [["", "", 1.0]]
    if rng.random() < 0.3:
        shapes.append(["The label is ", "", rng.uniform(0.2, 2.0)])
    if rng.random() < 0.2:
        shapes.append(["", ".", rng.uniform(0.2, 1.0)])
    return {"labels": weights, "forms": forms, "shapes": shapes, "end": rng.random() < 0.3}


def echo_truth(truth: dict) -> dict:
    """Echo scores as written, lowercase and capitalized: the same truth without the forms it does not read."""
    forms = {
        label: {f: w for f, w in spelled.items() if f.lstrip(" ") in (label, label.lower())}
        for label, spelled in truth["forms"].items()
    }
    return {**truth, "forms": forms}


def tasks_for(name: str, count: int, rng: random.Random) -> tuple[list[str], list[Example], dict[str, dict]]:
    labels, data = LABEL_SETS[name]
    rows = read_jsonl(data)
    rng.shuffle(rows)
    texts = list(dict.fromkeys(r["text"] for r in rows if isinstance(r["text"], str) and len(r["text"]) > 20))
    demos = [
        Example(texts[i * DEMOS_PER_LABEL + j], (label,), "seed", f"{name}:{i}:{j}")
        for i, label in enumerate(labels)
        for j in range(DEMOS_PER_LABEL)
    ]
    queries = texts[len(demos) : len(demos) + count]
    return labels, demos, {text: random_truth(labels, rng) for text in queries}


def run(server, name: str, mode: str, scoring: str, top_k: int, labels, demos, truths) -> dict:
    spec = parse_spec(choices_config(labels))
    if scoring == "echo":
        truths = {text: echo_truth(truth) for text, truth in truths.items()}
    server.declare(truths)
    settings = fake_settings(
        server.url, answer_mode=mode, scoring=scoring, top_logprobs=top_k, concurrency=8, answer_retries=0
    )
    labeler = Labeler(spec, demos, settings, LLMClient(settings))
    outcomes = dict(label_many(labeler, ((t, {"text": t}) for t in truths), 8))
    figures = {
        "tasks": len(truths),
        "agree": 0,
        "recoverable": 0,
        "agree_recoverable": 0,
        "null": 0,
        "failed": 0,
        "errors": [],
        "errors_recoverable": [],
    }
    for text, truth in truths.items():
        declared = Truth.from_json(truth)
        probabilities = declared.probabilities()
        argmax = max(probabilities, key=probabilities.get)
        outcome = outcomes[text]
        recoverable = (
            scoring == "echo" or analyse(declared, "json" if mode == "json" else "text", top_k, spec).recoverable
        )  # echo reads every label itself
        chosen = outcome.labels[0] if outcome.labels else None
        figures["failed"] += not outcome.ok
        figures["agree"] += chosen == argmax
        figures["recoverable"] += recoverable
        figures["agree_recoverable"] += recoverable and chosen == argmax
        if outcome.score is None:
            figures["null"] += outcome.ok
        elif chosen is not None:
            error = abs(outcome.score - probabilities[chosen])
            figures["errors"].append(error)
            if recoverable:
                figures["errors_recoverable"].append(error)
    return figures


def mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.4f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--top-logprobs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("backend.model.client").setLevel(logging.ERROR)

    print(
        f"{len(LABEL_SETS)} label sets x {args.tasks} tasks; answer scoring reads top_logprobs={args.top_logprobs}; "
        "agreement = chosen label is the declared argmax; error = |score - declared P(chosen label)|"
    )
    header = (
        f"{'label set':<10} {'mode':<9} {'scoring':<7} {'agree':>7} {'recoverable':>11} {'agree there':>11} "
        f"{'MAE there':>9} {'max there':>9} {'not recov.':>10} {'null score':>10} {'MAE all':>7}"
    )
    print(header)
    print("-" * len(header))
    server = spawn_fake_llm(reference=1)
    totals: dict[tuple, dict] = {}
    started = time.perf_counter()
    try:
        for name in LABEL_SETS:
            labels, demos, truths = tasks_for(name, args.tasks, random.Random(f"{args.seed}:{name}"))
            for mode, scoring in RUNS:
                f = run(server, name, mode, scoring, args.top_logprobs, labels, demos, truths)
                total = totals.setdefault(
                    (mode, scoring), {k: (0 if not isinstance(v, list) else []) for k, v in f.items()}
                )
                for key, value in f.items():
                    total[key] += value
                print(row(name, mode, scoring, f), flush=True)
    finally:
        server.stop()
    print("-" * len(header))
    for (mode, scoring), f in totals.items():
        print(row("all", mode, scoring, f))
    print(f"({time.perf_counter() - started:.0f} s; failed answers: {sum(f['failed'] for f in totals.values())})")


def row(name: str, mode: str, scoring: str, f: dict) -> str:
    agree = f"{f['agree'] / f['tasks']:.1%}"
    there = f"{f['agree_recoverable'] / f['recoverable']:.1%}" if f["recoverable"] else "-"
    worst = f"{max(f['errors_recoverable']):.4f}" if f["errors_recoverable"] else "-"
    return (
        f"{name:<10} {mode:<9} {scoring:<7} {agree:>7} {f['recoverable']:>11} {there:>11} "
        f"{mean(f['errors_recoverable']):>9} {worst:>9} {f['tasks'] - f['recoverable']:>10} {f['null']:>10} "
        f"{mean(f['errors']):>7}"
    )


if __name__ == "__main__":
    main()
