"""The `export` command: supervised fine-tuning data from a Label Studio project or a labeled JSONL file.

Each row is one (instruction, query, answer) triple built by the same functions the labeler uses, so a
model fine-tuned on it sees exactly the prompt it will be asked with: the system message is
`prompt.instruction`, the user message `prompt.render_query` (with the template the labeler uses for the
config), the assistant message `prompt.demonstration_answer`: the label(s) in the answer mode's form, or for
structured configs (spans, several controls) the JSON object with one field per control.

Which tasks make rows:

- human: a task's annotations that were not cancelled. Every one must give valid labels for the control
  (for structured configs: a value for some control, every value one the config can hold) and they must all
  agree (the same labels, the same answer); then the task makes ONE row. A task with disagreeing annotators,
  an annotation without a choice, or labels outside the config makes none (counted by reason).
- model (only with include_predictions): tasks that no human annotated at all get their newest prediction
  (or the newest of `model_version`) when its score reaches `min_score`. A prediction without a score is
  kept only when `min_score` is 0. Tasks a human did touch (skipped, disagreed, ...) never fall back to a
  prediction: the human judgement that the task is not clear-cut wins over the model's answer.

The pure part (`rows_from_tasks`, `rows_from_labeled`, `render_row`, `is_validation`) does no I/O.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.labeling.errors import BadExamples, LabelingError, MissingText
from backend.labeling.examples import Example, annotation_labels, canonical, normalize_labels, structured_answer
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, demonstration_answer, for_config, instruction, render_query
from backend.labeling.rows import read_values, row_label

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec

FORMATS = ("openai-chat", "alpaca", "jsonl")
AUTO = "auto"  # --min-score auto: the live quality's recommended threshold
HUMAN, MODEL = "human", "model"
# Tasks per page when every task of a project is listed (Label Studio 1.23 sets no maximum).
TASKS_PAGE_SIZE = 1000

# Why a task or a labeled row makes no row; printed as skipped_<reason>.
REASONS = {
    "disagreement": "annotators gave different labels",
    "cancelled": "every annotation was cancelled (skipped)",
    "no_choice": "an annotation has no choice for the control",
    "label_not_in_config": "an annotation has a label that is not in the config",
    "invalid_labels": "an annotation has several labels for a single-choice control",
    "no_value": "an annotation has a value for none of the config's controls",
    "invalid_value": "an annotation holds a value the config cannot (a label it lacks, a span outside the text, a "
    "number out of range)",
    "no_text": "the task has no text under the config's data key",
    "no_prediction": "no human annotation and no prediction (of the requested model_version)",
    "prediction_below_min_score": "the prediction's score is below --min-score",
    "prediction_without_score": "the prediction has no score (kept only with --min-score 0)",
    "prediction_no_choice": "the prediction has no choice for the control",
    "prediction_label_not_in_config": "the prediction has a label that is not in the config",
    "prediction_invalid_labels": "the prediction has several labels for a single-choice control",
    "prediction_no_value": "the prediction has a value for none of the config's controls",
    "prediction_invalid_value": "the prediction holds a value the config cannot",
    "label_failed": "the label command could not label the row (it has an error and no label)",
    "other_model_version": "the row was labeled by another model_version than --model-version",
    "model_not_requested": "the row's label is the model's: pass --include-predictions to export it",
}


class ExportError(LabelingError):
    """The export cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class SftRow:
    """One training example: a task's text and its labels (config order) or, for structured configs, its
    answer ({control: value} as canonical JSON), with where they came from."""

    task: int | str
    text: str
    labels: tuple[str, ...]
    source: str  # HUMAN or MODEL
    model_version: str | None = None
    score: float | None = None
    annotator_count: int | None = None  # agreeing annotations; 0 for model rows; None when unknown (files)
    answer_json: str = ""

    def example(self) -> Example:
        """The row as the labeler's Example (what prompt.demonstration_answer renders)."""
        return Example(self.text, self.labels, "annotation", str(self.task), self.answer_json)


@dataclass
class Selection:
    """What was picked: the rows (in a stable order) and why the rest was left out."""

    rows: list[SftRow] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    unscored_model_rows: int = 0  # model rows kept without a score (only with min_score 0)

    def add(self, row: SftRow | None, reason: str | None) -> None:
        if row is not None:
            self.rows.append(row)
            self.unscored_model_rows += row.source == MODEL and row.score is None
        elif reason is not None:
            self.skipped[reason] += 1


# ---- choosing rows: Label Studio tasks ------------------------------------------------------------------


def rows_from_tasks(
    tasks: Iterable[dict],
    spec: LabelingSpec,
    predictions: Iterable[dict] | None = None,
    *,
    min_score: float = 0.0,
    model_version: str | None = None,
) -> Selection:
    """Rows from Label Studio task dicts ({id, data, annotations}, as Studio.annotated_tasks and tasks give).

    `predictions` (a flat list of {task, result, score, model_version, created_at, id}, as
    Studio.predictions gives) is None to export human rows only; otherwise tasks without any annotation
    get a model row from it. Rows come in task id order.
    """
    by_task: dict = {}
    for prediction in predictions or []:
        by_task.setdefault(prediction.get("task"), []).append(prediction)
    selection = Selection()
    for task in sorted(tasks, key=lambda t: _id_order(t.get("id"))):
        row, reason = human_row(task, spec)
        if row is None and reason is None and predictions is not None:
            row, reason = model_row(task, spec, by_task.get(task.get("id"), []), min_score, model_version)
        selection.add(row, reason)
    return selection


def human_row(task: dict, spec: LabelingSpec) -> tuple[SftRow | None, str | None]:
    """(row, None), (None, reason to skip), or (None, None) when no human annotated the task."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    if not annotations:
        return None, None
    live = [a for a in annotations if not a.get("was_cancelled")]
    if not live:
        return None, "cancelled"
    text, text_reason = _text(task.get("data"), spec)
    answer: str | tuple[str, ...]  # a structured answer's JSON, or the labels
    answers: set[str | tuple[str, ...]] = set()
    for annotation in live:
        if spec.structured:
            if text_reason:
                return None, text_reason
            answer, reason = _answer(annotation.get("result"), spec, text)
        else:
            answer, reason = _labels(annotation_labels(annotation, spec), spec, task)
        if reason:
            return None, reason
        answers.add(answer)
    if len(answers) > 1:
        return None, "disagreement"
    if text_reason:
        return None, text_reason
    return _row(spec, task.get("id"), text, answers.pop(), HUMAN, annotator_count=len(live)), None


def model_row(
    task: dict, spec: LabelingSpec, predictions: list[dict], min_score: float, model_version: str | None
) -> tuple[SftRow | None, str | None]:
    """The row of a task no human annotated: its newest usable prediction, or the reason there is none."""
    candidates = [
        p
        for p in predictions
        if isinstance(p, dict) and (model_version is None or p.get("model_version") == model_version)
    ]
    if not candidates:
        return None, "no_prediction"
    prediction = max(candidates, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
    reason = _score_problem(prediction.get("score"), min_score)
    if reason:
        return None, reason
    text, reason = _text(task.get("data"), spec)
    if reason:
        return None, reason
    answer: str | tuple[str, ...]  # a structured answer's JSON, or the labels
    if spec.structured:
        answer, reason = _answer(prediction.get("result"), spec, text)
    else:
        answer, reason = _labels(annotation_labels(prediction, spec), spec, task)
    if reason:
        return None, "prediction_" + reason
    return _row(
        spec,
        task.get("id"),
        text,
        answer,
        MODEL,
        prediction.get("model_version"),
        prediction.get("score"),
        annotator_count=0,
    ), None


# ---- choosing rows: the label command's output -----------------------------------------------------------


def rows_from_labeled(
    rows: Iterable[dict],
    spec: LabelingSpec,
    *,
    include_predictions: bool = False,
    min_score: float = 0.0,
    model_version: str | None = None,
) -> Selection:
    """Rows from the `label` command's output, in file order.

    A row with `input_label` (the input's own, gold label) is a human row; otherwise its `label` is the
    model's (source "model", with the row's score and model_version), exported only with include_predictions.
    """
    from backend.commands.label_output import input_row, row_data, row_key

    selection = Selection()
    for row in rows:
        task = row["id"] if "id" in row else row_key(input_row(row))
        text, text_reason = _text(row_data(row), spec)
        if "input_label" in row:
            labels, reason = _row_answer(row["input_label"], spec, row, text, text_reason)
            reason = reason or text_reason
            selection.add(None if reason else _row(spec, task, text, labels, HUMAN), reason)
            continue
        if row.get("label") is None or row.get("error"):
            selection.add(None, "label_failed")
            continue
        if not include_predictions:
            selection.add(None, "model_not_requested")
            continue
        if model_version is not None and row.get("model_version") != model_version:
            selection.add(None, "other_model_version")
            continue
        reason = _score_problem(row.get("score"), min_score)
        labels, label_reason = _row_answer(row["label"], spec, row, text, text_reason)
        reason = reason or (label_reason and "prediction_" + label_reason) or text_reason
        selection.add(
            None
            if reason
            else _row(spec, task, text, labels, MODEL, row.get("model_version"), row.get("score"), annotator_count=0),
            reason,
        )
    return selection


# ---- shared checks ------------------------------------------------------------------------------------------


def _labels(raw, spec: LabelingSpec, where: dict) -> tuple[tuple[str, ...], str | None]:
    if raw is None or raw == [] or raw == "":
        return (), "no_choice"
    values = [raw] if isinstance(raw, str) else raw
    if isinstance(values, list) and any(isinstance(v, str) and v not in spec.label_values for v in values):
        return (), "label_not_in_config"
    try:
        return normalize_labels(raw, spec, f"task {where.get('id', '')}"), None
    except BadExamples:
        return (), "invalid_labels"


def _answer(result, spec: LabelingSpec, text: str) -> tuple[str, str | None]:
    """A structured annotation's (or prediction's) answer as canonical JSON, or why it makes no row."""
    try:
        answer = structured_answer(result, spec, text)
    except BadExamples:
        return "", "invalid_value"
    if not Example(text, (), answer_json=canonical(answer)).has_answer:
        return "", "no_value"
    return canonical(answer), None


def _row_answer(raw, spec: LabelingSpec, row: dict, text: str, text_reason: str | None) -> tuple:
    """A labeled file's label (the row form of labeling/rows.py) as labels, or a structured answer's JSON."""
    if not spec.structured:
        return _labels(raw, spec, row)
    if text_reason:
        return "", text_reason
    try:
        values = read_values(raw, spec, text, row.get("tokens"), f"row {row.get('id', '')}".strip())
    except BadExamples:
        return "", "invalid_value"
    if not Example(text, (), answer_json=canonical(values)).has_answer:
        return "", "no_value"
    return canonical(values), None


def _row(
    spec: LabelingSpec,
    task,
    text: str,
    answer,
    source: str,
    model_version: str | None = None,
    score: float | None = None,
    annotator_count: int | None = None,
) -> SftRow:
    """An SftRow from labels (a single Choices config) or a structured answer's canonical JSON."""
    if spec.structured:
        return SftRow(task, text, (), source, model_version, score, annotator_count, answer_json=answer)
    return SftRow(task, text, answer, source, model_version, score, annotator_count)


def _text(data, spec: LabelingSpec) -> tuple[str, str | None]:
    try:
        return spec.text_of(data), None
    except MissingText:
        return "", "no_text"


def _score_problem(score, min_score: float) -> str | None:
    if score is None:
        return None if min_score <= 0 else "prediction_without_score"
    return "prediction_below_min_score" if float(score) < min_score else None


def _id_order(task_id) -> tuple:
    return (0, task_id, "") if isinstance(task_id, int) else (1, 0, str(task_id))


# ---- rendering and splitting --------------------------------------------------------------------------------


def render_row(row: SftRow, spec: LabelingSpec, prompt: PromptSettings, fmt: str) -> dict:
    """One output line in the given format (the prompt functions are the labeler's own)."""
    prompt = for_config(prompt, spec)
    system = instruction(spec, prompt)
    user = render_query(prompt.template, row.text)
    assistant = demonstration_answer(spec, row.example(), prompt.mode)
    if fmt == "openai-chat":  # metadata goes to the sidecar: fine-tuning lines hold "messages" only
        return {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        }
    if fmt == "alpaca":
        return {
            "instruction": system,
            "input": user,
            "output": assistant,
            "source": row.source,
            "task": row.task,
            "model_version": row.model_version,
            "score": row.score,
        }
    if fmt == "jsonl":
        label = row_label(spec, row.labels, row.example().answer, row.text)
        return {
            "task": row.task,
            "text": row.text,
            "label": label,
            "source": row.source,
            "model_version": row.model_version,
            "score": row.score,
            "annotator_count": row.annotator_count,
        }
    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def row_meta(row: SftRow) -> dict:
    """The sidecar line of an openai-chat row (same line number as the row)."""
    return {
        "task": row.task,
        "source": row.source,
        "model_version": row.model_version,
        "score": row.score,
        "annotator_count": row.annotator_count,
    }


def is_validation(task, seed: int, fraction: float) -> bool:
    """Whether a task goes to the validation file: a hash of (seed, task id), so re-exports keep sides."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{seed}\x00{task}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def export_paths(output: Path) -> dict[str, Path]:
    """OUT.jsonl, its sidecar OUT.meta.jsonl, and OUT.val.jsonl with OUT.val.meta.jsonl."""
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return {
        "train": output,
        "train_meta": output.with_name(stem + ".meta.jsonl"),
        "val": output.with_name(stem + ".val.jsonl"),
        "val_meta": output.with_name(stem + ".val.meta.jsonl"),
    }


@dataclass
class ExportSummary:
    """What an export wrote and left out; printed at the end."""

    rows: Counter = field(default_factory=Counter)  # per source
    skipped: Counter = field(default_factory=Counter)  # per reason
    train: int = 0
    validation: int = 0
    unscored_model_rows: int = 0
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rows": {HUMAN: self.rows[HUMAN], MODEL: self.rows[MODEL]},
            "skipped": {f"skipped_{k}": v for k, v in sorted(self.skipped.items())},
            "train": self.train,
            "validation": self.validation,
            "model_rows_without_score": self.unscored_model_rows,
            "written": self.written,
            "removed": self.removed,
        }

    def lines(self) -> list[str]:
        total = self.rows[HUMAN] + self.rows[MODEL]
        lines = [
            f"rows {total}: human {self.rows[HUMAN]}, model {self.rows[MODEL]}"
            + (f" ({self.unscored_model_rows} without a score)" if self.unscored_model_rows else ""),
            f"train {self.train}  validation {self.validation}",
        ]
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"skipped_{k} {v}" for k, v in sorted(self.skipped.items())))
            lines.extend(f"  skipped_{k}: {REASONS.get(k, k)}" for k in sorted(self.skipped))
        lines.append("wrote " + ", ".join(self.written))
        if self.removed:
            lines.append("removed stale " + ", ".join(self.removed))
        return lines


def write_export(
    selection: Selection,
    spec: LabelingSpec,
    prompt: PromptSettings,
    fmt: str,
    output: Path,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ExportSummary:
    """Write the rows (and the sidecars, and the validation split); files are replaced whole, never half."""
    paths = export_paths(output)
    wanted = {"train"} | ({"train_meta"} if fmt == "openai-chat" else set())
    if val_fraction > 0:
        wanted |= {"val"} | ({"val_meta"} if fmt == "openai-chat" else set())
    lines: dict[str, list[str]] = {name: [] for name in wanted}
    summary = ExportSummary(skipped=Counter(selection.skipped), unscored_model_rows=selection.unscored_model_rows)
    for row in selection.rows:
        side = "val" if is_validation(row.task, seed, val_fraction) else "train"
        lines[side].append(json.dumps(render_row(row, spec, prompt, fmt), ensure_ascii=False))
        if fmt == "openai-chat":
            lines[side + "_meta"].append(json.dumps(row_meta(row), ensure_ascii=False))
        summary.rows[row.source] += 1
        summary.train += side == "train"
        summary.validation += side == "val"
    for name in ("train", "train_meta", "val", "val_meta"):
        if name in wanted:
            _replace(paths[name], lines[name])
            summary.written.append(f"{paths[name]} ({len(lines[name])})")
        elif paths[name].exists():
            # A split or sidecar left by an earlier export would no longer match the rows: it goes.
            paths[name].unlink()
            summary.removed.append(str(paths[name]))
    return summary


def _replace(path: Path, lines: list[str]) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(temp, path)


# ---- the command --------------------------------------------------------------------------------------------

HELP = """Write supervised fine-tuning data (JSON Lines) from a Label Studio project's annotations, or
from the output of the `label` command. Each row is the labeler's own prompt: the system instruction,
the query rendered with the template, and the answer in the answer mode. These come from the environment
(PROMPT_INSTRUCTION, PROMPT_TEMPLATE, LLM_ANSWER_MODE, LLM_MODEL): a project's "Extra params" in Label
Studio are not visible here, so set the same values in the environment if the project overrides them.
The project is read with LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `export` on the fewshot-prelabel command's subparsers."""
    parser = subparsers.add_parser(
        "export", help="write fine-tuning data (JSONL) from a project or a labeled file", description=HELP
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--project", type=int, help="Label Studio project id (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)")
    source.add_argument(
        "--input", type=Path, help="a JSONL file written by the label command (rows with input_label count as human)"
    )
    parser.add_argument("--config", type=Path, help="the labeling config (XML file); required with --input")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help='openai-chat: {"messages": [...]} with metadata in OUT.meta.jsonl; '
        "alpaca: {instruction, input, output, ...}; jsonl: {task, text, label, ...}",
    )
    parser.add_argument("--output", required=True, type=Path, help="OUT.jsonl (replaced)")
    parser.add_argument(
        "--include-predictions", action="store_true", help="also export the model's labels for tasks no human annotated"
    )
    parser.add_argument(
        "--min-score",
        type=_min_score,
        help="with --include-predictions (required there): lowest prediction score kept; "
        "0 also keeps predictions without a score; auto: the threshold the project's live "
        "quality backs for QUALITY_TARGET (see the quality command)",
    )
    parser.add_argument(
        "--model-version",
        help="with --include-predictions: only predictions of this model_version "
        "(default: each task's newest prediction)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="share of tasks written to OUT.val.jsonl instead (by a hash of seed and task id)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    parser.set_defaults(handler=run_export)
    return parser


def _min_score(raw: str) -> float | str:
    if raw == AUTO:
        return raw
    try:
        return float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or auto, got {raw!r}") from None


def run_export(args) -> int:
    """The export command; 0 when rows were written, 1 when there were none, 2 on an error."""
    from backend.model.options import BadOptions, prompt_for
    from backend.settings import Settings, SettingsError
    from backend.studio.client import StudioError

    try:
        _check_args(args)
        settings = Settings.from_env()
        prompt = prompt_for(settings, {})
        if args.min_score == AUTO:
            args.min_score = _auto_min_score(settings, args.project)
        if args.project is not None:
            spec, selection = _from_project(settings, args)
        else:
            spec, selection = _from_file(args)
        summary = write_export(selection, spec, prompt, args.format, args.output, args.val_fraction, args.seed)
    except (LabelingError, SettingsError, BadOptions, StudioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {exc.filename or args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    if not summary.train + summary.validation:
        print("warning: no rows to export", file=sys.stderr)
        return 1
    return 0


def _check_args(args) -> None:
    if args.input is not None and args.config is None:
        raise ExportError("--input needs --config, the labeling config the file was labeled with")
    if args.project is not None and args.config is not None:
        raise ExportError("--config is for --input; with --project the project's own labeling config is used")
    if args.include_predictions and args.min_score is None:
        raise ExportError(
            "--include-predictions needs --min-score S (0 keeps every prediction, even those without a score)"
        )
    if not args.include_predictions and (args.min_score is not None or args.model_version is not None):
        raise ExportError("--min-score and --model-version apply only with --include-predictions")
    if args.min_score == AUTO and args.project is None:
        raise ExportError("--min-score auto reads the live quality of a Label Studio project: use it with --project")
    if args.min_score not in (None, AUTO) and args.min_score < 0:
        raise ExportError(f"--min-score must be 0 or more, got {args.min_score}")
    if not 0 <= args.val_fraction < 1:
        raise ExportError(f"--val-fraction must be at least 0 and below 1, got {args.val_fraction}")
    if args.input is not None:
        source = args.input.resolve()
        if any(path.resolve() == source for path in export_paths(args.output).values()):
            raise ExportError(f"--output {args.output} would overwrite --input {args.input}")


def _auto_min_score(settings, project_id: int) -> float:
    from backend.commands.quality import backed_threshold

    threshold, evidence = backed_threshold(settings, project_id)
    print(f"--min-score auto: {threshold:.4g} ({evidence})", file=sys.stderr)
    return threshold


def _from_project(settings, args) -> tuple[LabelingSpec, Selection]:
    from backend.studio.client import studio_from

    with studio_from(settings.studio_url, settings.studio_api_key) as studio:
        spec = parse_spec(studio.project(args.project).get("label_config") or "")
        tasks = {task["id"]: task for task in studio.annotated_tasks(args.project)}
        predictions = None
        if args.include_predictions:
            predictions = studio.predictions(args.project)
            # Tasks without annotations: one cheap listing (no annotations, no predictions in it).
            for task in studio.tasks(args.project, page_size=TASKS_PAGE_SIZE):
                tasks.setdefault(task["id"], task)
    return spec, rows_from_tasks(
        tasks.values(), spec, predictions, min_score=args.min_score or 0.0, model_version=args.model_version
    )


def _from_file(args) -> tuple[LabelingSpec, Selection]:
    from backend.commands.label import read_rows

    try:
        config = args.config.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot read {str(args.config)!r}: {exc.strerror}") from exc
    spec = parse_spec(config)
    try:
        rows = read_rows(args.input)
    except OSError as exc:
        raise ExportError(f"cannot read {str(args.input)!r}: {exc.strerror}") from exc
    return spec, rows_from_labeled(
        rows,
        spec,
        include_predictions=args.include_predictions,
        min_score=args.min_score or 0.0,
        model_version=args.model_version,
    )
