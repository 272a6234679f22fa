"""Demonstrations: labeled examples read from Label Studio tasks and from seed files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import jsonl
from .errors import BadExamples, LabelingError
from .spec import LabelingSpec


@dataclass(frozen=True)
class Example:
    """One demonstration: a text and its labels (in the config's label order)."""

    text: str
    labels: tuple[str, ...]
    source: str = "annotation"  # "annotation" or "seed"
    ref: str = ""  # task id or file:line, for messages and leave-one-out
    answer_json: str = ""  # structured configs: {control name: value} as canonical JSON (kept hashable)

    @property
    def answer(self) -> dict:
        return json.loads(self.answer_json) if self.answer_json else {}

    def to_dict(self) -> dict:
        row = {"text": self.text, "labels": list(self.labels), "source": self.source, "ref": self.ref}
        if self.answer_json:
            row["answer"] = self.answer
        return row

    @classmethod
    def from_dict(cls, row: dict) -> "Example":
        answer = row.get("answer")
        return cls(text=row["text"], labels=tuple(row["labels"]), source=row.get("source", "annotation"),
                   ref=row.get("ref", ""), answer_json=canonical(answer) if answer else "")


def canonical(answer: dict) -> str:
    return json.dumps(answer, sort_keys=True, ensure_ascii=False)


def normalize_labels(raw: Any, spec: LabelingSpec, where: str) -> tuple[str, ...]:
    """Labels as a tuple in config order; BadExamples for unknown labels or the wrong arity."""
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise BadExamples(f"{where}: label must be a string or a non-empty list of strings, got {raw!r}")
    unknown = [v for v in values if v not in spec.label_values]
    if unknown:
        raise BadExamples(
            f"{where}: label {unknown[0]!r} is not in the config's {spec.control_name!r} choices "
            f"{list(spec.label_values)}"
        )
    if len(set(values)) > 1 and not spec.multiple:
        raise BadExamples(f"{where}: {len(values)} labels {values!r} for a single-choice control")
    return tuple(v for v in spec.label_values if v in values)


def annotation_labels(annotation: dict, spec: LabelingSpec) -> list[str] | None:
    """The choices an annotation gives the spec's control, or None when it gives none."""
    for item in annotation.get("result") or []:
        if not isinstance(item, dict) or item.get("from_name") != spec.control_name:
            continue
        choices = (item.get("value") or {}).get("choices")
        if choices:
            return list(choices)
    return None


def newest_annotation(task: dict) -> dict | None:
    """The task's newest annotation that was not cancelled (skipped), or None."""
    live = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def example_from_task(task: dict, spec: LabelingSpec) -> Example:
    """The demonstration a Label Studio task makes; LabelingError says why it makes none."""
    ref = str(task.get("id", ""))
    annotation = newest_annotation(task)
    if annotation is None:
        raise BadExamples(f"task {ref}: no annotation that was not cancelled")
    if spec.structured:
        return _structured_example(task, annotation, spec, ref)
    raw = annotation_labels(annotation, spec)
    if raw is None:
        raise BadExamples(f"task {ref}: its newest annotation has no {spec.control_name!r} choice")
    labels = normalize_labels(raw, spec, f"task {ref}")
    return Example(text=spec.text_of(task.get("data")), labels=labels, source="annotation", ref=ref)


def _structured_example(task: dict, annotation: dict, spec: LabelingSpec, ref: str) -> Example:
    text = spec.text_of(task.get("data"))
    result = [item for item in annotation.get("result") or [] if isinstance(item, dict)]
    answer = {}
    for control in spec.controls:
        value = control.from_result(result, text)
        if value is not None:
            answer[control.name] = value
    if not answer:
        raise BadExamples(f"task {ref}: its newest annotation has a value for none of the config's controls")
    return Example(text=text, labels=(), source="annotation", ref=ref, answer_json=canonical(answer))


def examples_from_tasks(tasks: Iterable[dict], spec: LabelingSpec) -> tuple[list[Example], Counter]:
    """Demonstrations from Label Studio task JSON; the Counter counts skipped tasks by reason."""
    examples, skipped = [], Counter()
    for task in tasks:
        try:
            examples.append(example_from_task(task, spec))
        except LabelingError as exc:
            skipped[_reason(exc)] += 1
    return examples, skipped


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("task ") and ": " in text else text


def load_seed_file(path: str | Path, spec: LabelingSpec) -> list[Example]:
    """Seeds from a JSONL file of {"text", "label"} rows or a Label Studio JSON export."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadExamples(f"cannot read seed file {str(path)!r}: {exc.strerror}") from exc
    if path.suffix == ".json":
        return _seeds_from_export(content, path, spec)
    return _seeds_from_jsonl(content, path, spec)


def load_seeds(paths: Iterable[str | Path], spec: LabelingSpec) -> list[Example]:
    """Seeds from files and directories (in a directory: every seeds*.jsonl and seeds*.json, sorted)."""
    examples: list[Example] = []
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("seeds*.json*")) if path.is_dir() else [path]
        for file in files:
            examples.extend(load_seed_file(file, spec))
    return examples


def _seeds_from_jsonl(content: str, path: Path, spec: LabelingSpec) -> list[Example]:
    examples = []
    for number, row in jsonl.objects(content.splitlines(), path.name, BadExamples):
        where = f"{path.name}:{number}"
        if "label" not in row:
            raise BadExamples(f"{where}: a seed row needs \"text\" and \"label\", got {str(row)[:80]!r}")
        text = row.get("text", row.get(spec.data_key))
        if not isinstance(text, str) or not text.strip():
            raise BadExamples(f"{where}: \"text\" must be a non-empty string")
        examples.append(Example(text, normalize_labels(row["label"], spec, where), "seed", where))
    return examples


def _seeds_from_export(content: str, path: Path, spec: LabelingSpec) -> list[Example]:
    try:
        tasks = json.loads(content)
    except json.JSONDecodeError as exc:
        raise BadExamples(f"{path.name}: not JSON ({exc.msg})") from exc
    if not isinstance(tasks, list):
        raise BadExamples(f"{path.name}: a Label Studio export is a JSON list of tasks")
    examples, _skipped = examples_from_tasks((t for t in tasks if isinstance(t, dict)), spec)
    return [Example(e.text, e.labels, "seed", f"{path.name}#{e.ref}") for e in examples]
