"""Shared pieces of the benchmark scripts: eval data, reproducible seed draws, configs, settings."""

from __future__ import annotations

import json
import random
from pathlib import Path

from backend.labeling.examples import Example
from backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
EVAL_DATA = REPO.parent / "shared" / "eval-data"


def read_jsonl(name: str) -> list[dict]:
    path = EVAL_DATA / name
    if not path.exists():
        raise SystemExit(f"eval data not found: {path} (benchmarks read ../shared/eval-data in place)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_seeds(rows: list[dict], per_label: int, queries: int, seed: int = 13) -> tuple[list[dict], list[dict]]:
    """Draw `per_label` seeds per label reproducibly; the queries come from the rest."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    seeds: dict[str, list[dict]] = {}
    rest = []
    for row in rows:
        bucket = seeds.setdefault(row["label"], [])
        (bucket if len(bucket) < per_label else rest).append(row)
    return [r for label in sorted(seeds) for r in seeds[label]], rest[:queries]


def choices_config(labels: list[str], name: str = "label") -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return f'<View><Text name="text" value="$text"/><Choices name="{name}" toName="text">{choices}</Choices></View>'


def as_examples(rows: list[dict]) -> list[Example]:
    return [Example(r["text"], (r["label"],), "seed", f"seed:{i}") for i, r in enumerate(rows)]


def fake_settings(url: str, **overrides) -> Settings:
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-bench", "LLM_MODEL": "fake-llm"}
    return Settings.from_env(env, **overrides)
