"""The `label` command's work: label a JSONL file into another, resumable, with progress and a summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from backend.commands.label_output import Output, output_format, row_data
from backend.costs import estimate_cost
from backend.labeling import jsonl

if TYPE_CHECKING:  # not loaded before `label --redis-url` has handed its tasks to the workers
    from backend.labeling.spec import LabelingSpec
    from backend.model.labeler import Outcome


LabelItems = Callable[[Iterable[tuple[str, dict]]], Iterator[tuple[str, "Outcome"]]]


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
        return {
            "rows": self.rows,
            "labeled": self.labeled,
            "failed": self.failed,
            "resumed": self.resumed,
            "cache_hits": self.cache_hits,
            "truncated": self.truncated,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "seconds": round(self.seconds, 2),
            "errors": dict(self.errors),
        }

    def lines(self) -> list[str]:
        rate = (self.labeled + self.failed) / self.seconds if self.seconds else 0.0
        cost = "unknown (no price for this model: set LLM_PRICES)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        lines = [
            f"rows {self.rows}  labeled {self.labeled}  failed {self.failed}  resumed {self.resumed}  "
            f"cache hits {self.cache_hits}  truncated {self.truncated}",
            f"requests {self.requests}  prompt tokens {self.prompt_tokens}  "
            f"completion tokens {self.completion_tokens}  estimated cost {cost}",
            f"seconds {self.seconds:.1f}  ({rate:.1f} rows/s)",
        ]
        if self.errors:
            lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common()))
        return lines


def read_rows(path: Path) -> list[dict]:
    """JSONL rows; LabelingError names the line that is not a JSON object."""
    with open(path, encoding="utf-8") as handle:
        return [row for _, row in jsonl.objects(handle, path.name)]


def _done_rows(output: Path, fmt: Output) -> dict[str, dict]:
    """Records an earlier run finished, from the output and from the side file a crashed run left."""
    done = {}
    for path in (output, _partial(output)):
        if not path.exists():
            continue
        for record in fmt.read(path):
            if fmt.done(record):
                done[fmt.record_key(record)] = record
    return done


def _partial(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def label_file(
    spec: LabelingSpec,
    input_path: Path,
    output_path: Path,
    label_items: LabelItems,
    *,
    model: str,
    prices: dict,
    progress: bool = True,
    fmt: str = "jsonl",
) -> RunSummary:
    """Label every row not yet labeled in the output; the output ends in input order.

    `label_items` turns (key, task data) pairs into (key, Outcome) pairs: backend.model.labeler.label_many labels
    them in this process, `backend.commands.remote_label` hands them to the rq workers. `fmt` is an output format of
    backend.commands.label_output (jsonl rows, or Label Studio tasks); `model` and `prices` give the estimated cost.
    """
    output = output_format(fmt)
    started = time.monotonic()
    rows = read_rows(input_path)
    done = _done_rows(output_path, output)
    summary = RunSummary(rows=len(rows))
    todo = [(output.input_key(row), row) for row in rows if output.input_key(row) not in done]
    summary.resumed = len(rows) - len(todo)
    by_key = dict(todo)
    partial = _partial(output_path)
    # Results go to a side file as they arrive, so a crash mid-run keeps them for the next run.
    with (
        open(partial, "a", encoding="utf-8") as sink,
        tqdm(total=len(todo), disable=not progress, unit="row", desc="labeling") as bar,
    ):
        for key, outcome in label_items((k, row_data(r)) for k, r in todo):
            result = output.record(by_key[key], outcome, spec)
            sink.write(json.dumps(result, ensure_ascii=False) + "\n")
            sink.flush()
            done[key] = result
            summary.add(outcome)
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    output.write(output_path, (done[k] for k in map(output.input_key, rows) if k in done))
    partial.unlink(missing_ok=True)
    summary.seconds = time.monotonic() - started
    summary.cost_usd = estimate_cost(model, summary.prompt_tokens, summary.completion_tokens, prices)
    return summary
