"""What the `label` command writes: JSON Lines rows, or Label Studio tasks with predictions to import.

- `jsonl` (default): each input row with `label` (labeling/rows.py: a label, a list, or one value per
  control, spans with start, end, text and labels), `score`, `model_version`, and `error` for a row that
  failed; an input `label` (gold) is kept as `input_label`.
- `label-studio`: a JSON list of tasks, `{"data": {...}, "predictions": [{"result", "score",
  "model_version"}]}`, that Label Studio imports as pre-annotated tasks as it is (Import, or
  `POST /api/projects/ID/import`). A task the model could not label has no prediction.

Both formats resume: a record says whether its row is done, and which input row it belongs to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.labeling import jsonl
from backend.labeling.errors import LabelingError, MissingText
from backend.labeling.prompt import stable_hash
from backend.labeling.results import answer_regions
from backend.labeling.rows import row_label

if TYPE_CHECKING:  # the module is read before the labeler is loaded (label --redis-url submits first)
    from backend.labeling.spec import LabelingSpec
    from backend.model.labeler import Outcome

FORMATS = ("jsonl", "label-studio")
OUTPUT_FIELDS = ("label", "score", "model_version", "error", "input_label", "truncated_chars")


def row_key(row: dict) -> str:
    """Identity of an input row for resuming: its id when it has one, else a hash of its content."""
    return f"id:{row['id']}" if "id" in row else stable_hash(row)[:24]


def row_data(row: dict) -> dict:
    """A row may be Label Studio task JSON ({"data": {...}}) or flat ({"text": ...})."""
    return row["data"] if isinstance(row.get("data"), dict) else row


def input_row(output: dict) -> dict:
    """The input row an output row was made from."""
    row = {k: v for k, v in output.items() if k not in OUTPUT_FIELDS}
    if "input_label" in output:
        row["label"] = output["input_label"]
    return row


def row_text(spec: LabelingSpec, row: dict) -> str | None:
    """The text the model read for a row, None when it has none."""
    try:
        return spec.text_of(row_data(row))
    except MissingText:
        return None


def output_row(row: dict, outcome: Outcome, spec: LabelingSpec) -> dict:
    """A jsonl output row: the input row with the model's label in the row form, score, model_version."""
    out = dict(row)
    if "label" in row:  # the input's own label (gold, say) is kept beside the model's
        out["input_label"] = out.pop("label")
    text = row_text(spec, row) or ""
    out["label"] = row_label(spec, outcome.labels, outcome.values, text) if outcome.ok else None
    out["score"] = None if outcome.score is None else round(outcome.score, 6)
    out["model_version"] = outcome.model_version
    if outcome.truncated_chars:
        out["truncated_chars"] = outcome.truncated_chars  # the text was cut to fit the token budget
    if outcome.error:
        out["error"] = f"{outcome.error}: {outcome.detail}"
    else:
        out.pop("error", None)
    return out


def studio_task(row: dict, outcome: Outcome, spec: LabelingSpec) -> dict:
    """A Label Studio task for import: the row's data (and meta), and the model's prediction if it has one.

    The regions are built and checked by the SDK like every prediction the backend writes; a span's text
    is exactly the task text between its offsets."""
    task: dict[str, Any] = {"data": dict(row_data(row))}
    if isinstance(row.get("data"), dict) and isinstance(row.get("meta"), dict):
        task["meta"] = row["meta"]
    predictions = []
    text = row_text(spec, row)
    if outcome.ok and text is not None:
        try:
            result = answer_regions(spec, outcome.labels, outcome.values, text)
        except LabelingError:
            result = None  # a cached answer the config no longer holds: no prediction rather than a wrong one
        if result is not None:
            score = None if outcome.score is None else round(outcome.score, 6)
            predictions.append({"result": result, "score": score, "model_version": outcome.model_version})
    task["predictions"] = predictions
    return task


class Output:
    """One output format: how a labeled row is recorded, when a record is done, how files are read and written."""

    name = "jsonl"

    def record(self, row: dict, outcome: Outcome, spec: LabelingSpec) -> dict:
        return output_row(row, outcome, spec)

    def input_key(self, row: dict) -> str:
        return row_key(row)

    def record_key(self, record: dict) -> str:
        return row_key(input_row(record))

    def done(self, record: dict) -> bool:
        return record.get("label") is not None and not record.get("error")

    def read(self, path: Path) -> list[dict]:
        with open(path, encoding="utf-8") as handle:
            return [row for _, row in jsonl.objects(handle, path.name)]

    def write(self, path: Path, records: Iterable[dict]) -> None:
        temp = path.with_name(path.name + ".tmp")
        with open(temp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temp, path)


class StudioTasks(Output):
    """Label Studio tasks; resuming matches tasks to input rows by their data."""

    name = "label-studio"

    def record(self, row: dict, outcome: Outcome, spec: LabelingSpec) -> dict:
        return studio_task(row, outcome, spec)

    def input_key(self, row: dict) -> str:
        return "data:" + stable_hash(row_data(row))[:24]

    def record_key(self, record: dict) -> str:
        return "data:" + stable_hash(record.get("data"))[:24]

    def done(self, record: dict) -> bool:
        return bool(record.get("predictions"))

    def read(self, path: Path) -> list[dict]:
        if path.suffix == ".partial":
            return super().read(path)
        try:
            tasks = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LabelingError(
                f"{path.name}: not a JSON list of Label Studio tasks ({exc.msg}); "
                "move it away or choose another --output"
            ) from exc
        if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
            raise LabelingError(
                f"{path.name}: not a JSON list of Label Studio tasks; move it away or choose another --output"
            )
        return tasks

    def write(self, path: Path, records: Iterable[dict]) -> None:
        temp = path.with_name(path.name + ".tmp")
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        temp.write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n", encoding="utf-8")
        os.replace(temp, path)


def output_format(name: str) -> Output:
    """The writer of an output format by its name (FORMATS)."""
    if name == "label-studio":
        return StudioTasks()
    if name == "jsonl":
        return Output()
    raise LabelingError(f"unknown output format {name!r}; choose one of {', '.join(FORMATS)}")
