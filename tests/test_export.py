"""`fewshot-prelabel export`: fine-tuning rows from annotated tasks and labeled files, without Label Studio."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backend.commands.export import (
    FORMATS,
    add_parser,
    export_paths,
    is_validation,
    render_row,
    rows_from_labeled,
    rows_from_tasks,
    run_export,
    write_export,
)
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, answer_text, build_messages, instruction, render_query
from tests.conftest import MULTI_CONFIG, SEEDS, SENTIMENT_CONFIG

SPEC = parse_spec(SENTIMENT_CONFIG)
MULTI = parse_spec(MULTI_CONFIG)
PROMPT = PromptSettings(model="gpt-4o-mini")


def annotation(*labels, id=1, cancelled=False, control="sentiment", updated="2026-01-01T00:00:00Z"):
    result = [{"from_name": control, "to_name": "text", "type": "choices", "value": {"choices": list(labels)}}]
    return {"id": id, "was_cancelled": cancelled, "updated_at": updated, "result": result if labels else []}


def task(text, *annotations, id=7):
    return {"id": id, "data": {"text": text}, "annotations": list(annotations)}


def prediction(task_id, label, score, version="v1", id=1, created="2026-01-01T00:00:00Z"):
    return {
        "id": id,
        "task": task_id,
        "score": score,
        "model_version": version,
        "created_at": created,
        "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
    }


# ---- the OpenAI chat fine-tuning line format ------------------------------------------------------------


def openai_chat_problems(line: str) -> list[str]:
    """Why a line is not a valid OpenAI chat fine-tuning example (empty when it is)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc.msg}"]
    if not isinstance(row, dict):
        return ["a line must be a JSON object"]
    problems = []
    if set(row) != {"messages"}:
        problems.append(f"top-level keys must be exactly ['messages'], got {sorted(row)}")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + ["messages must be a non-empty list"]
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            problems.append(f"message {number} must be a {{role, content}} object, got {message!r}")
            continue
        if message["role"] not in ("system", "user", "assistant"):
            problems.append(f"message {number} has role {message['role']!r}")
        if not isinstance(message["content"], str) or not message["content"].strip():
            problems.append(f"message {number} needs non-empty string content")
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "assistant" not in roles:
        problems.append("no assistant message")
    elif roles[-1] != "assistant":
        problems.append("the last message must be the assistant's")
    return problems


def test_the_validator_catches_what_openai_refuses():
    good = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    assert openai_chat_problems(json.dumps(good)) == []
    assert openai_chat_problems(json.dumps({**good, "task": 1}))
    assert openai_chat_problems(json.dumps({"messages": good["messages"][:1]}))
    assert openai_chat_problems(json.dumps({"messages": good["messages"][::-1]}))
    assert openai_chat_problems(
        json.dumps({"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]})
    )
    assert openai_chat_problems(json.dumps({"messages": [{"role": "assistant", "content": ""}]}))
    assert openai_chat_problems("not json")


# ---- human rows ---------------------------------------------------------------------------------------------


def test_agreeing_annotators_make_one_row_and_disagreeing_ones_are_skipped_and_counted():
    tasks = [
        task("good", annotation("positive", id=1), annotation("positive", id=2), id=1),
        task("torn", annotation("positive", id=3), annotation("negative", id=4), id=2),
        task("solo", annotation("negative", id=5), id=3),
    ]
    selection = rows_from_tasks(tasks, SPEC)
    assert [(r.task, r.labels, r.source, r.annotator_count) for r in selection.rows] == [
        (1, ("positive",), "human", 2),
        (3, ("negative",), "human", 1),
    ]
    assert selection.skipped == {"disagreement": 1}


def test_cancelled_annotations_are_ignored():
    tasks = [
        task("a", annotation("negative", id=1, cancelled=True), annotation("positive", id=2), id=1),
        task("b", annotation("positive", id=3, cancelled=True), id=2),
    ]
    selection = rows_from_tasks(tasks, SPEC)
    assert [(r.task, r.labels, r.annotator_count) for r in selection.rows] == [(1, ("positive",), 1)]
    assert selection.skipped == {"cancelled": 1}


@pytest.mark.parametrize(
    "bad, reason",
    [
        (annotation(), "no_choice"),
        (annotation("positive", control="other"), "no_choice"),
        (annotation("banana"), "label_not_in_config"),
        (annotation("positive", "negative"), "invalid_labels"),
    ],
)
def test_annotations_that_give_no_usable_label_skip_the_task_with_the_reason(bad, reason):
    selection = rows_from_tasks([task("x", bad, id=1), task("y", annotation("positive", id=2), bad, id=2)], SPEC)
    assert selection.rows == []
    assert selection.skipped == {reason: 2}


def test_a_task_without_text_is_skipped():
    selection = rows_from_tasks([{"id": 1, "data": {"other": "x"}, "annotations": [annotation("positive")]}], SPEC)
    assert selection.rows == [] and selection.skipped == {"no_text": 1}


def test_multiple_choice_agreement_ignores_the_order_of_choices():
    a = annotation("politics", "sports", control="topics", id=1)
    b = annotation("sports", "politics", control="topics", id=2)
    c = annotation("sports", control="topics", id=3)
    selection = rows_from_tasks([task("vote", a, b, id=1), task("match", a, c, id=2)], MULTI)
    assert [(r.task, r.labels) for r in selection.rows] == [(1, ("sports", "politics"))]
    assert selection.skipped == {"disagreement": 1}


def test_without_predictions_unannotated_tasks_are_neither_rows_nor_counted():
    selection = rows_from_tasks([task("a", id=1)], SPEC)
    assert selection.rows == [] and not selection.skipped


# ---- model rows ---------------------------------------------------------------------------------------------


def test_predictions_fill_only_tasks_no_human_touched_and_respect_the_min_score():
    tasks = [
        task("annotated", annotation("negative"), id=1),
        task("torn", annotation("positive", id=2), annotation("negative", id=3), id=2),
        task("skipped", annotation("positive", cancelled=True), id=3),
        task("sure", id=4),
        task("unsure", id=5),
        task("unscored", id=6),
        task("nothing", id=7),
    ]
    predictions = [prediction(t, "positive", 0.99, id=t) for t in (1, 2, 3)] + [
        prediction(4, "positive", 0.9, id=4),
        prediction(5, "negative", 0.2, id=5),
        prediction(6, "negative", None, id=6),
    ]
    selection = rows_from_tasks(tasks, SPEC, predictions, min_score=0.5)
    assert [(r.task, r.source, r.labels, r.score, r.model_version, r.annotator_count) for r in selection.rows] == [
        (1, "human", ("negative",), None, None, 1),
        (4, "model", ("positive",), 0.9, "v1", 0),
    ]
    assert selection.skipped == {
        "disagreement": 1,
        "cancelled": 1,
        "prediction_below_min_score": 1,
        "prediction_without_score": 1,
        "no_prediction": 1,
    }


def test_predictions_without_a_score_are_kept_only_with_min_score_zero_and_counted():
    tasks, predictions = [task("unscored", id=6)], [prediction(6, "negative", None)]
    selection = rows_from_tasks(tasks, SPEC, predictions, min_score=0.0)
    assert [(r.task, r.score) for r in selection.rows] == [(6, None)]
    assert selection.unscored_model_rows == 1
    assert rows_from_tasks(tasks, SPEC, predictions, min_score=0.01).skipped == {"prediction_without_score": 1}


def test_the_newest_prediction_counts_unless_a_model_version_is_asked_for():
    predictions = [
        prediction(1, "positive", 0.9, "v1", id=10, created="2026-01-01T00:00:00.000001Z"),
        prediction(1, "negative", 0.3, "v2", id=11, created="2026-01-02T00:00:00.000001Z"),
    ]
    newest = rows_from_tasks([task("t", id=1)], SPEC, predictions, min_score=0.5)
    assert newest.rows == [] and newest.skipped == {"prediction_below_min_score": 1}  # no fallback to v1
    chosen = rows_from_tasks([task("t", id=1)], SPEC, predictions, min_score=0.5, model_version="v1")
    assert [(r.labels, r.model_version, r.score) for r in chosen.rows] == [(("positive",), "v1", 0.9)]
    missing = rows_from_tasks([task("t", id=1)], SPEC, predictions, min_score=0.5, model_version="v3")
    assert missing.skipped == {"no_prediction": 1}


def test_predictions_with_labels_the_config_lacks_are_skipped():
    selection = rows_from_tasks([task("t", id=1)], SPEC, [prediction(1, "banana", 0.9)], min_score=0.0)
    assert selection.skipped == {"prediction_label_not_in_config": 1}


# ---- formats ------------------------------------------------------------------------------------------------


def human_and_model_rows():
    tasks = [task("I love it", annotation("positive"), id=1), task('He said "{no}" \u00e9', id=2)]
    return rows_from_tasks(tasks, SPEC, [prediction(2, "negative", 0.75, "fsp-abc")], min_score=0.5)


@pytest.mark.parametrize("mode", ["json", "logprobs", "text"])
def test_openai_chat_rows_are_the_labelers_own_prompt(mode):
    prompt = PromptSettings(
        model="m", mode=mode, instruction="Be careful.", template="Review: {text}\nSentiment: {label}"
    )
    for row in human_and_model_rows().rows:
        messages = render_row(row, SPEC, prompt, "openai-chat")["messages"]
        labeler = build_messages(SPEC, [], row.text, prompt)  # what the labeler sends, zero-shot
        assert messages[:2] == labeler
        assert messages[0]["content"] == instruction(SPEC, prompt)
        assert messages[1]["content"] == render_query(prompt.template, row.text)
        assert messages[2] == {"role": "assistant", "content": answer_text(SPEC, row.labels, mode)}
        assert openai_chat_problems(json.dumps(render_row(row, SPEC, prompt, "openai-chat"))) == []


def test_alpaca_and_jsonl_rows_carry_their_metadata():
    human, model = human_and_model_rows().rows
    alpaca = render_row(model, SPEC, PROMPT, "alpaca")
    assert alpaca == {
        "instruction": instruction(SPEC, PROMPT),
        "input": render_query(PROMPT.template, model.text),
        "output": '{"label": "negative"}',
        "source": "model",
        "task": 2,
        "model_version": "fsp-abc",
        "score": 0.75,
    }
    assert render_row(human, SPEC, PROMPT, "jsonl") == {
        "task": 1,
        "text": "I love it",
        "label": "positive",
        "source": "human",
        "model_version": None,
        "score": None,
        "annotator_count": 1,
    }
    multi = rows_from_tasks([task("vote", annotation("politics", "sports", control="topics"), id=3)], MULTI).rows[0]
    assert render_row(multi, MULTI, PROMPT, "jsonl")["label"] == ["sports", "politics"]
    assert render_row(multi, MULTI, PROMPT, "alpaca")["output"] == '{"labels": ["sports", "politics"]}'


def test_openai_chat_files_validate_round_trip_and_have_an_aligned_sidecar(tmp_path):
    out = tmp_path / "sft.jsonl"
    summary = write_export(human_and_model_rows(), SPEC, PROMPT, "openai-chat", out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [openai_chat_problems(line) for line in lines] == [[], []]
    rows = [json.loads(line) for line in lines]  # a JSON Lines reader: one object per line
    assert [r["messages"][1]["content"] for r in rows] == [
        "I love it [SEP] The label of the above text is",
        'He said "{no}" \u00e9 [SEP] The label of the above text is',
    ]
    meta = [json.loads(line) for line in (tmp_path / "sft.meta.jsonl").read_text().splitlines()]
    assert meta == [
        {"task": 1, "source": "human", "model_version": None, "score": None, "annotator_count": 1},
        {"task": 2, "source": "model", "model_version": "fsp-abc", "score": 0.75, "annotator_count": 0},
    ]
    assert summary.as_dict()["rows"] == {"human": 1, "model": 1}
    assert (summary.train, summary.validation) == (2, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_writes_one_json_object_per_line(tmp_path, fmt):
    out = tmp_path / "o.jsonl"
    write_export(human_and_model_rows(), SPEC, PROMPT, fmt, out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and all(isinstance(r, dict) for r in rows)
    assert (tmp_path / "o.meta.jsonl").exists() == (fmt == "openai-chat")


# ---- the split ----------------------------------------------------------------------------------------------


def many_rows(count=200, start=1):
    return rows_from_tasks(
        [task(f"text {i}", annotation("positive" if i % 2 else "negative"), id=i) for i in range(start, start + count)],
        SPEC,
    )


def tasks_in(path: Path) -> list:
    return [json.loads(line)["task"] for line in path.read_text().splitlines()]


def test_the_split_is_deterministic_by_seed_and_task_not_by_position(tmp_path):
    paths = export_paths(tmp_path / "d.jsonl")
    summary = write_export(many_rows(), SPEC, PROMPT, "jsonl", paths["train"], val_fraction=0.2, seed=1)
    train, val = tasks_in(paths["train"]), tasks_in(paths["val"])
    assert sorted(train + val) == list(range(1, 201)) and (summary.train, summary.validation) == (len(train), len(val))
    assert 20 <= len(val) <= 60  # about a fifth
    write_export(many_rows(), SPEC, PROMPT, "jsonl", paths["train"], val_fraction=0.2, seed=1)
    assert tasks_in(paths["val"]) == val  # same seed, same split
    write_export(many_rows(), SPEC, PROMPT, "jsonl", paths["train"], val_fraction=0.2, seed=2)
    assert tasks_in(paths["val"]) != val  # another seed, another split
    bigger = many_rows(300)  # more tasks later, and in another order: old tasks stay on their side
    bigger.rows.reverse()
    write_export(bigger, SPEC, PROMPT, "jsonl", paths["train"], val_fraction=0.2, seed=1)
    assert set(val) <= set(tasks_in(paths["val"])) and not set(val) & set(tasks_in(paths["train"]))
    assert all(is_validation(t, 1, 0.2) for t in val) and not any(is_validation(t, 1, 0.0) for t in range(500))


def test_openai_chat_split_has_a_sidecar_per_file_and_stale_files_go(tmp_path):
    out = tmp_path / "c.jsonl"
    write_export(many_rows(50), SPEC, PROMPT, "openai-chat", out, val_fraction=0.3, seed=3)
    for data, meta in (("c.jsonl", "c.meta.jsonl"), ("c.val.jsonl", "c.val.meta.jsonl")):
        rows = (tmp_path / data).read_text().splitlines()
        metas = [json.loads(line) for line in (tmp_path / meta).read_text().splitlines()]
        assert len(rows) == len(metas) > 0
        for line, info in zip(rows, metas):  # aligned line by line
            assert openai_chat_problems(line) == []
            assert json.loads(line)["messages"][1]["content"].startswith(f"text {info['task']} [SEP]")
    summary = write_export(many_rows(50), SPEC, PROMPT, "jsonl", out)
    assert not any((tmp_path / n).exists() for n in ("c.meta.jsonl", "c.val.jsonl", "c.val.meta.jsonl"))
    assert len(summary.removed) == 3 and len(out.read_text().splitlines()) == 50


# ---- the command on a file from `label` ---------------------------------------------------------------------


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot-prelabel")
    add_parser(parser.add_subparsers())
    return parser


def run(*argv: str) -> int:
    args = export_parser().parse_args(["export", *argv])
    assert args.handler is run_export
    return args.handler(args)


SUPPORT = SEEDS / "support" / "config.xml"


def labeled_file(tmp_path: Path) -> Path:
    rows = [
        {
            "id": 1,
            "ticket": "I was charged twice.",
            "input_label": "Billing",
            "label": "Billing",
            "score": 0.9,
            "model_version": "fsp-1",
        },
        {"id": 2, "ticket": "Where is my parcel?", "label": "Shipping", "score": 0.95, "model_version": "fsp-1"},
        {"id": 3, "ticket": "Login fails.", "label": "Account", "score": 0.4, "model_version": "fsp-1"},
        {"id": 4, "ticket": "The app crashes.", "label": "technical", "score": None, "model_version": "fsp-1"},
        {"id": 5, "ticket": "???", "label": None, "score": None, "model_version": "fsp-1", "error": "malformed: x"},
        {"id": 6, "ticket": "Nice app!", "label": "Feedback", "score": 0.99, "model_version": "fsp-0"},
        {
            "id": 7,
            "ticket": "Refund please",
            "input_label": "Refunds",
            "label": "Billing",
            "score": 0.8,
            "model_version": "fsp-1",
        },
        {"data": {"ticket": "Change my e-mail"}, "label": "Account", "score": 0.7, "model_version": "fsp-1"},
    ]
    path = tmp_path / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labeled_rows_gold_is_human_and_the_models_label_needs_include_predictions():
    rows = [
        {"id": 1, "text": "good", "input_label": "positive", "label": "negative", "score": 0.9, "model_version": "m"},
        {"id": 2, "text": "bad", "label": "negative", "score": 0.9, "model_version": "m"},
        {"id": 3, "text": "meh", "input_label": ["positive", "negative"], "label": "negative"},
    ]
    human_only = rows_from_labeled(rows, SPEC)
    assert [(r.task, r.labels, r.source) for r in human_only.rows] == [(1, ("positive",), "human")]
    assert human_only.skipped == {"model_not_requested": 1, "invalid_labels": 1}
    both = rows_from_labeled(rows, SPEC, include_predictions=True, min_score=0.95)
    assert both.skipped == {"prediction_below_min_score": 1, "invalid_labels": 1}
    both = rows_from_labeled(rows, SPEC, include_predictions=True, min_score=0.5)
    assert [(r.task, r.labels, r.source, r.score, r.model_version) for r in both.rows] == [
        (1, ("positive",), "human", None, None),
        (2, ("negative",), "model", 0.9, "m"),
    ]


def test_a_labeled_file_exports_gold_rows_as_human_and_labels_as_model(tmp_path, capsys):
    source, out = labeled_file(tmp_path), tmp_path / "sft.jsonl"
    code = run(
        "--input",
        str(source),
        "--config",
        str(SUPPORT),
        "--format",
        "jsonl",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0.5",
        "--model-version",
        "fsp-1",
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task"], r["label"], r["source"], r["score"]) for r in rows[:2]] == [
        (1, "Billing", "human", None),
        (2, "Shipping", "model", 0.95),
    ]
    assert rows[2]["label"] == "Account" and rows[2]["source"] == "model" and isinstance(rows[2]["task"], str)
    assert len(rows) == 3
    printed = capsys.readouterr().out
    assert "rows 3: human 1, model 2" in printed
    for counted in (
        "skipped_prediction_below_min_score 1",
        "skipped_prediction_without_score 1",
        "skipped_label_failed 1",
        "skipped_other_model_version 1",
        "skipped_label_not_in_config 1",
    ):
        assert counted in printed


def test_a_labeled_file_without_include_predictions_gives_the_gold_rows_only(tmp_path, capsys):
    source, out = labeled_file(tmp_path), tmp_path / "sft.jsonl"
    assert run("--input", str(source), "--config", str(SUPPORT), "--format", "alpaca", "--output", str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task"], r["output"], r["source"]) for r in rows] == [(1, '{"label": "Billing"}', "human")]
    assert "skipped_model_not_requested 5" in capsys.readouterr().out


def test_the_label_commands_real_output_exports(tmp_path, fake_llm, monkeypatch, capsys):
    from backend.commands.cli import main

    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake")
    monkeypatch.setenv("LLM_MODEL", "fake-llm")
    tasks = [json.loads(line) for line in (SEEDS / "support" / "tasks.jsonl").read_text().splitlines()][:6]
    tasks[0]["label"] = "Billing"  # a gold label: becomes input_label
    source, labeled, out = tmp_path / "tasks.jsonl", tmp_path / "labeled.jsonl", tmp_path / "sft.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    assert (
        main(
            [
                "label",
                "--config",
                str(SUPPORT),
                "--seeds",
                str(SEEDS / "support"),
                "--input",
                str(source),
                "--output",
                str(labeled),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = run(
        "--input",
        str(labeled),
        "--config",
        str(SUPPORT),
        "--format",
        "openai-chat",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0",
    )
    assert code == 0
    lines, meta = out.read_text().splitlines(), (tmp_path / "sft.meta.jsonl").read_text().splitlines()
    assert len(lines) == len(meta) == 6 and all(openai_chat_problems(line) == [] for line in lines)
    infos = [json.loads(m) for m in meta]
    assert infos[0]["source"] == "human" and all(i["source"] == "model" for i in infos[1:])
    assert all(i["model_version"].startswith("fsp-") and 0 < i["score"] <= 1 for i in infos[1:])
    assert json.loads(lines[0])["messages"][2]["content"] == '{"label": "Billing"}'


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--input", "x.jsonl", "--format", "jsonl", "--output", "o.jsonl"], "--input needs --config"),
        (
            ["--project", "1", "--config", "c.xml", "--format", "jsonl", "--output", "o.jsonl"],
            "--config is for --input",
        ),
        (["--project", "1", "--format", "jsonl", "--output", "o.jsonl", "--include-predictions"], "needs --min-score"),
        (["--project", "1", "--format", "jsonl", "--output", "o.jsonl", "--min-score", "0.5"], "only with --include"),
        (["--project", "1", "--format", "jsonl", "--output", "o.jsonl", "--val-fraction", "1"], "--val-fraction"),
        (["--project", "1", "--format", "jsonl", "--output", "o.jsonl"], "LABEL_STUDIO_URL"),
    ],
)
def test_mistakes_are_explained(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert run(*argv) == 2
    assert message in capsys.readouterr().err


def test_the_output_may_not_overwrite_the_input(tmp_path, capsys):
    source = labeled_file(tmp_path)
    assert run("--input", str(source), "--config", str(SUPPORT), "--format", "jsonl", "--output", str(source)) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert len(source.read_text().splitlines()) == 8


def test_source_and_format_are_required():
    with pytest.raises(SystemExit):
        export_parser().parse_args(["export", "--format", "jsonl", "--output", "o.jsonl"])
    with pytest.raises(SystemExit):
        export_parser().parse_args(["export", "--project", "1", "--format", "csv", "--output", "o.jsonl"])
