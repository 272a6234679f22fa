"""The `label` command's work: label a JSONL file into another, resumable, with progress and a summary."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from .costs import estimate_cost
from .labeler import Labeler, Outcome, label_many
from .labeling import jsonl
from .labeling.prompt import stable_hash


LabelItems = Callable[[Iterable[tuple[str, dict]]], Iterator[tuple[str, Outcome]]]
OUTPUT_FIELDS = ("label", "score", "model_version", "error", "input_label", "truncated_chars")


@dataclass
class RunSummary:
    """Figures of one labeling run, printed at the end and returned to callers."""

    rows: int = 0
    labeled: int = 0
    failed: int = 0
    resumed: int = 0
    cache_hits: int = 0
    truncated: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float | None = None
    errors: Counter = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.labeled += outcome.ok
        self.failed += not outcome.ok
        self.cache_hits += outcome.cached
        self.truncated += bool(outcome.truncated_chars)
        if outcome.error:
            self.errors[outcome.error] += 1
        self.requests += outcome.requests
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens

    def as_dict(self) -> dict:
        return {"rows": self.rows, "labeled": self.labeled, "failed": self.failed, "resumed": self.resumed,
                "cache_hits": self.cache_hits, "truncated": self.truncated, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost_usd": self.cost_usd,
                "seconds": round(self.seconds, 2), "errors": dict(self.errors)}

    def lines(self) -> list[str]:
        rate = (self.labeled + self.failed) / self.seconds if self.seconds else 0.0
        cost = "unknown (no price for this model: set LLM_PRICES)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        lines = [f"rows {self.rows}  labeled {self.labeled}  failed {self.failed}  resumed {self.resumed}  "
                 f"cache hits {self.cache_hits}  truncated {self.truncated}",
                 f"requests {self.requests}  prompt tokens {self.prompt_tokens}  "
                 f"completion tokens {self.completion_tokens}  estimated cost {cost}",
                 f"seconds {self.seconds:.1f}  ({rate:.1f} rows/s)"]
        if self.errors:
            lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common()))
        return lines


def read_rows(path: Path) -> list[dict]:
    """JSONL rows; LabelingError names the line that is not a JSON object."""
    with open(path, encoding="utf-8") as handle:
        return [row for _, row in jsonl.objects(handle, path.name)]


def row_key(row: dict) -> str:
    """Identity of an input row for resuming: its id when it has one, else a hash of its content."""
    return f"id:{row['id']}" if "id" in row else stable_hash(row)[:24]


def row_data(row: dict) -> dict:
    """A row may be Label Studio task JSON ({"data": {...}}) or flat ({"text": ...})."""
    return row["data"] if isinstance(row.get("data"), dict) else row


def output_row(row: dict, outcome: Outcome, multiple: bool) -> dict:
    out = dict(row)
    if "label" in row:  # the input's own label (gold, say) is kept beside the model's
        out["input_label"] = out.pop("label")
    labels = outcome.labels
    if outcome.values is not None:  # structured configs: one field per control
        out["label"] = outcome.values
    else:
        out["label"] = (list(labels) if multiple else labels[0]) if labels else None
    out["score"] = None if outcome.score is None else round(outcome.score, 6)
    out["model_version"] = outcome.model_version
    if outcome.truncated_chars:
        out["truncated_chars"] = outcome.truncated_chars  # the text was cut to fit the token budget
    if outcome.error:
        out["error"] = f"{outcome.error}: {outcome.detail}"
    else:
        out.pop("error", None)
    return out


def _done_rows(output: Path) -> dict[str, dict]:
    """Rows an earlier run labeled, from the output and from the side file a crashed run left."""
    done = {}
    for path in (output, _partial(output)):
        if not path.exists():
            continue
        for row in read_rows(path):
            if row.get("label") is not None and not row.get("error"):
                done[row_key(input_row(row))] = row
    return done


def input_row(output: dict) -> dict:
    """The input row an output row was made from."""
    row = {k: v for k, v in output.items() if k not in OUTPUT_FIELDS}
    if "input_label" in output:
        row["label"] = output["input_label"]
    return row


def _partial(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def label_file(labeler: Labeler, input_path: Path, output_path: Path, concurrency: int,
               progress: bool = True, label_items: LabelItems | None = None) -> RunSummary:
    """Label every row not yet labeled in the output; the output ends in input order.

    `label_items` turns (key, task data) pairs into (key, Outcome) pairs; the default labels them in this
    process with bounded concurrency, `backend.remote_label` hands them to the rq workers.
    """
    label_items = label_items or (lambda items: label_many(labeler, items, concurrency))
    started = time.monotonic()
    rows = read_rows(input_path)
    done = _done_rows(output_path)
    summary = RunSummary(rows=len(rows))
    todo = [(row_key(row), row) for row in rows if row_key(row) not in done]
    summary.resumed = len(rows) - len(todo)
    by_key = dict(todo)
    partial = _partial(output_path)
    # Results go to a side file as they arrive, so a crash mid-run keeps them for the next run.
    with open(partial, "a", encoding="utf-8") as sink, \
            tqdm(total=len(todo), disable=not progress, unit="row", desc="labeling") as bar:
        for key, outcome in label_items((k, row_data(r)) for k, r in todo):
            result = output_row(by_key[key], outcome, labeler.spec.multiple)
            sink.write(json.dumps(result, ensure_ascii=False) + "\n")
            sink.flush()
            done[key] = result
            summary.add(outcome)
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    _write_in_order(output_path, rows, done, partial)
    summary.seconds = time.monotonic() - started
    summary.cost_usd = estimate_cost(labeler.prompt.model, summary.prompt_tokens, summary.completion_tokens,
                                     labeler.settings.price_table)
    return summary


def _write_in_order(output: Path, rows: list[dict], done: dict[str, dict], partial: Path) -> None:
    temp = output.with_name(output.name + ".tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        for row in rows:
            result = done.get(row_key(row))
            if result is not None:
                handle.write(json.dumps(result, ensure_ascii=False) + "\n")
    os.replace(temp, output)
    partial.unlink(missing_ok=True)

