"""Demonstrations: labeled examples read from Label Studio tasks and from seed files."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.labeling import jsonl
from backend.labeling.errors import BadExamples, LabelingError
from backend.labeling.rows import EMPTY, read_values

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec


@dataclass(frozen=True)
class Example:
    """One demonstration: a text and its labels (in the config's label order)."""

    text: str
    labels: tuple[str, ...]
    source: str = "annotation"  # "annotation" or "seed"
    ref: str = ""  # task id or file:line, for messages and leave-one-out
    answer_json: str = ""  # structured configs: {control name: value} as canonical JSON (kept hashable)

    @property
    def answer(self) -> dict[str, Any]:
        return json.loads(self.answer_json) if self.answer_json else {}

    @property
    def has_answer(self) -> bool:
        """Whether it teaches anything: a label, or a value for at least one control (an empty span list,
        "no entities", is a gold answer but alone makes no demonstration)."""
        return bool(self.labels) or any(value not in (None, [], "") for value in self.answer.values())

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"text": self.text, "labels": list(self.labels), "source": self.source, "ref": self.ref}
        if self.answer_json:
            row["answer"] = self.answer
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        answer = row.get("answer")
        return cls(
            text=row["text"],
            labels=tuple(row["labels"]),
            source=row.get("source", "annotation"),
            ref=row.get("ref", ""),
            answer_json=canonical(answer) if answer else "",
        )


def canonical(answer: dict[str, Any]) -> str:
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


def annotation_labels(annotation: dict[str, Any], spec: LabelingSpec) -> list[str] | None:
    """The choices an annotation gives the spec's control, or None when it gives none."""
    for item in annotation.get("result") or []:
        if not isinstance(item, dict) or item.get("from_name") != spec.control_name:
            continue
        choices = (item.get("value") or {}).get("choices")
        if choices:
            return list(choices)
    return None


def newest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest annotation that was not cancelled (skipped), or None."""
    live = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def example_from_task(task: dict[str, Any], spec: LabelingSpec, gold: bool = False) -> Example:
    """The demonstration a Label Studio task makes; LabelingError says why it makes none.

    With `gold`, an annotation that marked no span (and nothing else) is kept: as a gold answer "no
    entities" is an answer, as a demonstration it teaches nothing."""
    ref = str(task.get("id", ""))
    annotation = newest_annotation(task)
    if annotation is None:
        raise BadExamples(f"task {ref}: no annotation that was not cancelled")
    if spec.structured:
        return _structured_example(task, annotation, spec, ref, gold)
    raw = annotation_labels(annotation, spec)
    if raw is None:
        raise BadExamples(f"task {ref}: its newest annotation has no {spec.control_name!r} choice")
    labels = normalize_labels(raw, spec, f"task {ref}")
    return Example(text=spec.text_of(task.get("data")), labels=labels, source="annotation", ref=ref)


def structured_answer(result: list[Any] | None, spec: LabelingSpec, text: str) -> dict[str, Any]:
    """{control name: value} of an annotation's (or a prediction's) result; BadExamples when it holds what the
    config cannot (a label it lacks, a span outside the text)."""
    result = [item for item in result or [] if isinstance(item, dict)]
    answer = {}
    for control in spec.controls:
        value = control.from_result(result, text)
        if value is None and control.tag == "Labels":
            value = []  # a submitted annotation without spans says the text has none
        if value is not None:
            answer[control.name] = value
    return answer


def _structured_example(
    task: dict[str, Any], annotation: dict[str, Any], spec: LabelingSpec, ref: str, gold: bool
) -> Example:
    text = spec.text_of(task.get("data"))
    answer = structured_answer(annotation.get("result"), spec, text)
    example = Example(text=text, labels=(), source="annotation", ref=ref, answer_json=canonical(answer))
    if not example.has_answer and not (gold and answer):
        raise BadExamples(f"task {ref}: {NO_VALUE}")
    return example


NO_VALUE = "its newest annotation has a value for none of the config's controls"


def examples_from_tasks(
    tasks: Iterable[dict[str, Any]], spec: LabelingSpec, gold: bool = False
) -> tuple[list[Example], Counter[str]]:
    """Demonstrations (or, with `gold`, gold answers) from Label Studio task JSON; the Counter counts skipped
    tasks by reason."""
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    for task in tasks:
        try:
            examples.append(example_from_task(task, spec, gold))
        except LabelingError as exc:
            skipped[_reason(exc)] += 1
    return examples, skipped


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("task ") and ": " in text else text


def load_seed_file(path: str | Path, spec: LabelingSpec) -> list[Example]:
    """Seeds from a JSONL file of {"text", "label"} rows or a Label Studio JSON export."""
    return read_seed_file(path, spec)[0]


def read_seed_file(path: str | Path, spec: LabelingSpec, gold: bool = False) -> tuple[list[Example], Counter[str]]:
    """Examples from a JSONL file of {"text", "label"} rows (labeling/rows.py) or a Label Studio JSON export,
    and the rows or tasks skipped, by reason. A row or task without a value for any control is skipped
    (with `gold`, one that says "no entities" is kept); one that contradicts the config is an error."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadExamples(f"cannot read seed file {str(path)!r}: {exc.strerror}") from exc
    if path.suffix == ".json":
        return _seeds_from_export(content, path, spec, gold)
    return _seeds_from_jsonl(content, path, spec, gold)


def load_seeds(paths: Iterable[str | Path], spec: LabelingSpec) -> list[Example]:
    """Seeds from files and directories (in a directory: every seeds*.jsonl and seeds*.json, sorted)."""
    return read_seeds(paths, spec)[0]


def read_seeds(paths: Iterable[str | Path], spec: LabelingSpec) -> tuple[list[Example], Counter[str]]:
    """load_seeds, and the rows or tasks skipped, by reason."""
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("seeds*.json*")) if path.is_dir() else [path]
        for file in files:
            found, missed = read_seed_file(file, spec)
            examples.extend(found)
            skipped.update(missed)
    return examples, skipped


def example_from_row(
    row: dict[str, Any], spec: LabelingSpec, where: str, source: str = "seed", gold: bool = False
) -> Example | None:
    """The example a {"text", "label"} row makes, None when its label is empty; BadExamples names the row."""
    if "label" not in row:
        raise BadExamples(f'{where}: a row needs "text" and "label", got {str(row)[:80]!r}')
    text = row.get("text", row.get(spec.data_key))
    if not isinstance(text, str) or not text.strip():
        raise BadExamples(f'{where}: "text" must be a non-empty string')
    raw = row["label"]
    if not spec.structured:
        if raw in EMPTY:
            return None
        return Example(text, normalize_labels(raw, spec, where), source, where)
    values = read_values(raw, spec, text, row.get("tokens"), where)
    example = Example(text, (), source, where, canonical(values))
    return example if example.has_answer or (gold and values) else None


def _seeds_from_jsonl(content: str, path: Path, spec: LabelingSpec, gold: bool) -> tuple[list[Example], Counter[str]]:
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    for number, row in jsonl.objects(content.splitlines(), path.name, BadExamples):
        example = example_from_row(row, spec, f"{path.name}:{number}", gold=gold)
        if example is None:
            skipped[EMPTY_ROW] += 1
        else:
            examples.append(example)
    return examples, skipped


EMPTY_ROW = "the row's label gives no value for any control"


def _seeds_from_export(content: str, path: Path, spec: LabelingSpec, gold: bool) -> tuple[list[Example], Counter[str]]:
    try:
        tasks = json.loads(content)
    except json.JSONDecodeError as exc:
        raise BadExamples(f"{path.name}: not JSON ({exc.msg})") from exc
    if not isinstance(tasks, list):
        raise BadExamples(f"{path.name}: a Label Studio export is a JSON list of tasks")
    examples, skipped = examples_from_tasks((t for t in tasks if isinstance(t, dict)), spec, gold)
    # The whole example is kept (its structured answer too), only its origin changes.
    return [replace(e, source="seed", ref=f"{path.name}#{e.ref}") for e in examples], skipped
