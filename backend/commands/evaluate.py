"""The `evaluate` command: cross-validated model labels of human-labeled tasks, scored against a no-LLM baseline."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from backend.commands.evaluate_summary import num as _num
from backend.commands.evaluate_summary import print_structured
from backend.commands.label import RunSummary
from backend.costs import estimate_cost
from backend.evaluation.baselines import StructuredBaseline
from backend.evaluation.metrics import EvalItem, evaluate
from backend.evaluation.predictions import notable, task_row, write_predictions
from backend.evaluation.report_files import write_reports
from backend.evaluation.structured import StructuredItem, evaluate_structured
from backend.labeling.examples import Example, examples_from_tasks, load_seeds, read_seed_file
from backend.labeling.matching import normalize
from backend.labeling.parser import parse_spec
from backend.labeling.selection import TfidfIndex
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, Outcome, label_many

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec
    from backend.settings import Settings


def fold_of(example: Example, folds: int, seed: int) -> int:
    """A stable fold per example (by its text), so re-runs and other machines split the same way."""
    digest = hashlib.sha256(f"{seed}:{example.text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def training_side(test: list[Example], candidates: list[Example]) -> list[Example]:
    """The candidates (seeds, other folds) without any copy of a test text, exact or differing only in case,
    spacing and punctuation: no task's own label reaches its prompt or the baseline through a seed."""
    exact = {g.text for g in test}
    loose = {key for key in (normalize(g.text) for g in test) if key}
    return [e for e in candidates if e.text not in exact and normalize(e.text) not in loose]


def subset(gold: list[Example], limit: int, seed: int) -> list[Example]:
    """A reproducible sample of `limit` examples (all of them when limit is 0)."""
    if not limit or limit >= len(gold):
        return gold
    ranked = sorted(gold, key=lambda e: hashlib.sha256(f"sample:{seed}:{e.text}".encode()).digest())
    chosen = {id(e) for e in ranked[:limit]}
    return [e for e in gold if id(e) in chosen]  # in the order they were read


def nearest_label(index: TfidfIndex, train: list[Example], text: str) -> tuple[str, ...] | None:
    """The no-LLM baseline: the label of the most similar training example (TF-IDF cosine)."""
    nearest = nearest_example(index, train, text)
    return None if nearest is None else nearest.labels


def nearest_example(index: TfidfIndex, train: list[Example], text: str) -> Example | None:
    """The most similar training example (TF-IDF cosine), None without any."""
    if not train:
        return None
    return train[index.nearest(text, 1)[0]]


@dataclass(frozen=True)
class Trial:
    """One cross-validated task: its gold example, the model's outcome, the no-LLM baseline's answer (labels for
    a single Choices config, {control: value} otherwise) and the fold it was in."""

    example: Example
    outcome: Outcome
    baseline: tuple[str, ...] | dict | None
    fold: int

    @property
    def baseline_labels(self) -> tuple[str, ...] | None:
        """The baseline's labels (a single Choices config)."""
        return self.baseline if isinstance(self.baseline, tuple) else None

    @property
    def baseline_answer(self) -> dict | None:
        """The baseline's {control: value} answer (any other config)."""
        return self.baseline if isinstance(self.baseline, dict) else None


def cross_validate(
    spec: LabelingSpec,
    gold: list[Example],
    seeds: list[Example],
    settings: Settings,
    client: LLMClient,
    folds: int,
    seed: int,
    progress: bool = True,
) -> tuple[list[Trial], RunSummary]:
    """Label every gold example with demonstrations from the other folds only (never its own label)."""
    items, usage = [], RunSummary()
    with tqdm(total=len(gold), unit="task", desc="evaluating", disable=not progress) as bar:
        for fold in range(folds):
            test = [g for g in gold if fold_of(g, folds, seed) == fold]
            train = training_side(test, seeds + [g for g in gold if fold_of(g, folds, seed) != fold])
            if not test:
                continue
            labeler = Labeler(spec, train, settings, client)
            index = TfidfIndex([e.text for e in labeler.examples])
            structured = StructuredBaseline(spec.controls, labeler.examples) if spec.structured else None
            outcomes = dict(
                label_many(labeler, ((i, {spec.data_key: g.text}) for i, g in enumerate(test)), settings.concurrency)
            )
            for i, example in enumerate(test):
                outcome = outcomes[i]
                baseline: tuple[str, ...] | dict | None
                if structured is None:
                    baseline = nearest_label(index, labeler.examples, example.text)
                else:
                    baseline = structured.answer(nearest_example(index, labeler.examples, example.text), example.text)
                items.append(Trial(example, outcome, baseline, fold))
                usage.add(outcome)
            bar.update(len(test))
    return items, usage


def gold_examples(args, settings: Settings, spec: LabelingSpec) -> list[Example]:
    """Human-labeled examples from a file with gold labels ({"text", "label"} rows as seed files have them,
    or a Label Studio export), or from a Label Studio project's annotations."""
    if args.input:
        examples, skipped = read_seed_file(args.input, spec, gold=True)
        what = "rows"
    else:
        from backend.studio.client import Studio

        with Studio(settings.studio_url, settings.studio_api_key.reveal()) as studio:
            examples, skipped = examples_from_tasks(studio.annotated_tasks(args.project), spec, gold=True)
        what = "annotated tasks"
    if skipped:
        print(
            f"skipped {sum(skipped.values())} {what}: "
            + ", ".join(f"{reason} ({n})" for reason, n in skipped.most_common(5)),
            file=sys.stderr,
        )
    return examples


def project_config(args, settings: Settings) -> str:
    if args.config:
        return Path(args.config).read_text(encoding="utf-8")
    from backend.studio.client import Studio

    with Studio(settings.studio_url, settings.studio_api_key.reveal()) as studio:
        return studio.project(args.project)["label_config"]


def run_evaluate(args, settings: Settings) -> int:
    if args.project and not (settings.studio_url and settings.studio_api_key):
        print("error: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to evaluate a project", file=sys.stderr)
        return 2
    spec = parse_spec(project_config(args, settings))
    gold = subset(gold_examples(args, settings, spec), args.limit, args.seed)
    seeds = load_seeds(args.seeds + [Path(p) for p in settings.seed_paths], spec)
    if len(gold) < 2:
        print(f"error: {len(gold)} human-labeled tasks: cross-validation needs at least 2", file=sys.stderr)
        return 2
    folds = min(args.folds, len(gold))
    client = LLMClient(settings)
    started = time.monotonic()
    trials, usage = cross_validate(spec, gold, seeds, settings, client, folds, args.seed, progress=not args.no_progress)
    seconds = time.monotonic() - started
    position = {id(example): i for i, example in enumerate(gold)}
    trials.sort(key=lambda t: position[id(t.example)])  # predictions.jsonl in the order the tasks were read
    result = score_trials(spec, trials, args.target_accuracy)
    labeler = Labeler(spec, seeds, settings, None)
    meta = {
        "source": str(args.input) if args.input else f"Label Studio project {args.project}",
        "tasks": len(gold),
        "folds": folds,
        "seeds": len(seeds),
        "model": labeler.prompt.model,
        "mode": labeler.prompt.mode,
        "selection": labeler.prompt.selection.describe(),
        "calibration": labeler.prompt.calibration,
        "batch": labeler.batch_size,
        "requests": usage.requests,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "failed": usage.failed,
        "cost_usd": estimate_cost(
            labeler.prompt.model, usage.prompt_tokens, usage.completion_tokens, settings.price_table
        ),
        "seconds": round(seconds, 1),
        "baseline": BASELINES[spec.structured],
    }
    rows = [prediction_row(spec, trial) for trial in trials]
    paths = write_reports(result, Path(args.output_dir), f"Evaluation: {meta['source']}", meta, notable(rows))
    paths["predictions"] = write_predictions(rows, Path(args.output_dir) / "predictions.jsonl")
    if spec.structured:
        print_structured(result, meta, paths)
    else:
        _print_summary(result, meta, paths)
    return 0


BASELINES = {
    False: "label of the nearest training example (TF-IDF), no LLM",
    True: "spans: every entity text seen in training, where it stands in the text (a gazetteer); other "
    "controls: the nearest training example's value (TF-IDF); no LLM",
}


def score_trials(spec: LabelingSpec, trials: list[Trial], target_accuracy: float) -> dict:
    """The evaluation of the trials: label metrics for one Choices control, per-control figures otherwise."""
    if spec.structured:
        answers = [
            StructuredItem(
                t.example.answer, t.outcome.values if t.outcome.ok else None, t.outcome.score, t.baseline_answer
            )
            for t in trials
        ]
        return evaluate_structured(spec.controls, answers, target_accuracy=target_accuracy)
    labels = [EvalItem(t.example.labels, t.outcome.labels, t.outcome.score, t.baseline_labels) for t in trials]
    return evaluate(labels, list(spec.label_values), spec.multiple, target_accuracy=target_accuracy)


def prediction_row(spec: LabelingSpec, trial: Trial) -> dict:
    """The task's predictions.jsonl row."""
    outcome = trial.outcome
    return task_row(
        spec,
        trial.example,
        labels=outcome.labels,
        values=outcome.values,
        score=outcome.score,
        error=f"{outcome.error}: {outcome.detail}" if outcome.error else None,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        demonstrations=list(outcome.demonstrations),
        fold=trial.fold,
    )


def _print_summary(result: dict, meta: dict, paths: dict) -> None:
    accuracy = result["accuracy"]
    baseline = result.get("baseline") or {}
    print(f"{meta['tasks']} tasks, {meta['folds']}-fold cross-validation; failed {meta['failed']}")
    print(
        f"accuracy {_pct(accuracy)}  macro-F1 {_num(result.get('macro_f1'))}  "
        f"(baseline: accuracy {_pct(baseline.get('accuracy'))}, macro-F1 {_num(baseline.get('macro_f1'))})"
    )
    calibration = result.get("calibration") or {}
    print(
        f"ECE {_num(calibration.get('ece'))}  recommended threshold {result.get('recommended_threshold')} "
        f"for {result.get('target_accuracy')} accuracy"
    )
    cost = "unknown" if meta["cost_usd"] is None else f"${meta['cost_usd']:.4f}"
    print(
        f"requests {meta['requests']}  prompt tokens {meta['prompt_tokens']}  completion tokens "
        f"{meta['completion_tokens']}  estimated cost {cost}  seconds {meta['seconds']}"
    )
    print("reports: " + "  ".join(str(p) for p in paths.values()))


def _pct(value) -> str:
    if isinstance(value, dict):
        value = value.get("all")
    return "n/a" if value is None else f"{value:.3f}"
