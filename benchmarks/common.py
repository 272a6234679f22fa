"""Shared pieces of the benchmark scripts: eval data, reproducible seed draws, configs, settings."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from backend.labeling.examples import Example
from backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# The human-labeled data sets, read in place: ../shared/eval-data beside the clone, or FEWSHOT_EVAL_DATA.
EVAL_DATA = Path(os.environ.get("FEWSHOT_EVAL_DATA") or REPO.parent / "shared" / "eval-data")


def read_jsonl(name: str) -> list[dict]:
    path = EVAL_DATA / name
    if not path.exists():
        raise SystemExit(
            f"eval data not found: {path} (benchmarks read ../shared/eval-data beside the clone; "
            "set FEWSHOT_EVAL_DATA to the folder when it is elsewhere)"
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_seeds(rows: list[dict], per_label: int, queries: int, seed: int = 13) -> tuple[list[dict], list[dict]]:
    """Draw `per_label` seeds per label reproducibly; the queries come from the rest. With multi-label rows
    (a list of labels) the seeds are drawn from rows with one label, the queries keep all of theirs."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    seeds: dict[str, list[dict]] = {}
    rest = []
    for row in rows:
        labels = row_labels(row)
        if len(labels) != 1:
            rest.append(row)
            continue
        bucket = seeds.setdefault(labels[0], [])
        (bucket if len(bucket) < per_label else rest).append(row)
    return [r for label in sorted(seeds) for r in seeds[label]], rest[:queries]


def row_labels(row: dict) -> tuple[str, ...]:
    """A row's gold labels: "label" is one label or a list of them."""
    label = row["label"]
    return tuple(label) if isinstance(label, list) else (label,)


def choices_config(labels: list[str], name: str = "label", multiple: bool = False) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    kind = ' choice="multiple"' if multiple else ""
    return (
        f'<View><Text name="text" value="$text"/><Choices name="{name}" toName="text"{kind}>{choices}</Choices></View>'
    )


def as_examples(rows: list[dict]) -> list[Example]:
    return [Example(r["text"], row_labels(r), "seed", f"seed:{i}") for i, r in enumerate(rows)]


def fake_settings(url: str, **overrides) -> Settings:
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-bench", "LLM_MODEL": "fake-llm"}
    return Settings.from_env(env, **overrides)
