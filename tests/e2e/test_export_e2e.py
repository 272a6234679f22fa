"""`fewshot-prelabel export` against a real Label Studio 1.23.2: annotations and predictions become SFT rows."""

from __future__ import annotations

import argparse
import json

import pytest

from backend.commands.export import add_parser, run_export
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, instruction, render_query
from backend.studio.client import Studio

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive" hint="the writer likes it"/><Choice value="Negative"/>
  </Choices>
</View>"""

TEXTS = {
    "agree": "Two annotators loved it.",
    "disagree": "Annotators could not agree on this one.",
    "cancelled_then_live": "One annotator skipped, another said negative.",
    "only_cancelled": "Everybody skipped this.",
    "no_choice": "Submitted without a choice.",
    "off_config": "Labeled with a choice the config does not have.",
    "solo": "One annotator said negative.",
    "human_and_prediction": "Annotated and predicted.",
    "predicted_twice": "The model changed its mind.",
    "predicted_low": "The model is unsure.",
    "predicted_unscored": "The model gave no score.",
    "unlabeled": "Nobody touched this.",
}


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture(scope="module")
def project(studio):
    api = studio.api
    created = api.create_project("Export", CONFIG)
    ids = dict(zip(TEXTS, api.import_tasks(created["id"], [{"text": t} for t in TEXTS.values()])))
    api.create_annotation(ids["agree"], choice("Positive"))
    api.create_annotation(ids["agree"], choice("Positive"))
    api.create_annotation(ids["disagree"], choice("Positive"))
    api.create_annotation(ids["disagree"], choice("Negative"))
    api.create_annotation(ids["cancelled_then_live"], [], was_cancelled=True)
    api.create_annotation(ids["cancelled_then_live"], choice("Negative"))
    api.create_annotation(ids["only_cancelled"], [], was_cancelled=True)
    api.create_annotation(ids["no_choice"], [])
    api.create_annotation(ids["off_config"], choice("Neutral"))  # Label Studio 1.23 accepts it
    api.create_annotation(ids["solo"], choice("Negative"))
    api.create_annotation(ids["human_and_prediction"], choice("Positive"))
    # Predictions on tasks a human touched never become rows.
    for name in ("disagree", "only_cancelled", "human_and_prediction"):
        api.create_prediction(ids[name], choice("Negative"), score=0.99, model_version="v2")
    api.create_prediction(ids["predicted_twice"], choice("Positive"), score=0.9, model_version="v1")
    api.create_prediction(ids["predicted_twice"], choice("Negative"), score=0.8, model_version="v2")  # newest
    api.create_prediction(ids["predicted_low"], choice("Positive"), score=0.2, model_version="v2")
    api.create_prediction(ids["predicted_unscored"], choice("Negative"), score=None, model_version="v2")
    return {"id": created["id"], "ids": ids}


@pytest.fixture
def env(studio, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", studio.token)
    monkeypatch.setenv("PROMPT_INSTRUCTION", "Label customer reviews.")


def export(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fewshot-prelabel")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    assert args.handler is run_export
    return args.handler(args)


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_studio_lists_a_projects_predictions_as_plain_dicts(studio, project):
    with Studio(studio.url, studio.token) as client:
        predictions = client.predictions(project["id"])
    assert len(predictions) == 7
    twice = sorted((p for p in predictions if p["task"] == project["ids"]["predicted_twice"]), key=lambda p: p["id"])
    assert [(p["model_version"], p["score"]) for p in twice] == [("v1", 0.9), ("v2", 0.8)]
    assert all(isinstance(p["created_at"], str) and p["result"][0]["from_name"] == "sentiment" for p in twice)
    assert any(p["score"] is None for p in predictions)


def test_human_rows_only_by_default(env, project, tmp_path, capsys):
    out = tmp_path / "human.jsonl"
    assert export("--project", str(project["id"]), "--format", "jsonl", "--output", str(out)) == 0
    ids = project["ids"]
    rows = read(out)
    assert [(r["task"], r["label"], r["source"], r["annotator_count"]) for r in rows] == [
        (ids["agree"], "Positive", "human", 2),
        (ids["cancelled_then_live"], "Negative", "human", 1),
        (ids["solo"], "Negative", "human", 1),
        (ids["human_and_prediction"], "Positive", "human", 1),
    ]
    assert rows[0]["text"] == TEXTS["agree"]
    printed = capsys.readouterr().out
    assert "rows 4: human 4, model 0" in printed
    for counted in (
        "skipped_disagreement 1",
        "skipped_cancelled 1",
        "skipped_no_choice 1",
        "skipped_label_not_in_config 1",
    ):
        assert counted in printed
    assert "skipped_no_prediction" not in printed and "train 4  validation 0" in printed


def test_predictions_above_the_min_score_fill_the_tasks_nobody_annotated(env, project, tmp_path, capsys):
    out = tmp_path / "sft.jsonl"
    code = export(
        "--project",
        str(project["id"]),
        "--format",
        "openai-chat",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0.5",
    )
    assert code == 0
    ids = project["ids"]
    meta = read(tmp_path / "sft.meta.jsonl")
    assert [(m["task"], m["source"], m["model_version"], m["score"]) for m in meta] == [
        (ids["agree"], "human", None, None),
        (ids["cancelled_then_live"], "human", None, None),
        (ids["solo"], "human", None, None),
        (ids["human_and_prediction"], "human", None, None),
        (ids["predicted_twice"], "model", "v2", 0.8),
    ]
    lines = read(out)
    assert len(lines) == len(meta) and all(set(line) == {"messages"} for line in lines)
    spec, prompt = parse_spec(CONFIG), PromptSettings(model="gpt-4o-mini", instruction="Label customer reviews.")
    model_line = lines[-1]["messages"]
    assert model_line[0] == {"role": "system", "content": instruction(spec, prompt)}
    assert "the writer likes it" in model_line[0]["content"]
    assert model_line[1]["content"] == render_query(prompt.template, TEXTS["predicted_twice"])
    assert model_line[2] == {"role": "assistant", "content": '{"label": "Negative"}'}
    printed = capsys.readouterr().out
    assert "rows 5: human 4, model 1" in printed
    for counted in (
        "skipped_disagreement 1",
        "skipped_cancelled 1",
        "skipped_no_choice 1",
        "skipped_label_not_in_config 1",
        "skipped_prediction_below_min_score 1",
        "skipped_prediction_without_score 1",
        "skipped_no_prediction 1",
    ):
        assert counted in printed


def test_a_model_version_and_min_score_zero_choose_other_predictions(env, project, tmp_path, capsys):
    ids = project["ids"]
    out = tmp_path / "v1.jsonl"
    code = export(
        "--project",
        str(project["id"]),
        "--format",
        "alpaca",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0.5",
        "--model-version",
        "v1",
    )
    assert code == 0
    model = [r for r in read(out) if r["source"] == "model"]
    assert [(r["task"], r["output"], r["model_version"], r["score"]) for r in model] == [
        (ids["predicted_twice"], '{"label": "Positive"}', "v1", 0.9)
    ]
    assert "skipped_no_prediction 3" in capsys.readouterr().out  # low, unscored and unlabeled have no v1
    out = tmp_path / "all.jsonl"
    code = export(
        "--project",
        str(project["id"]),
        "--format",
        "jsonl",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0",
    )
    assert code == 0
    model = {r["task"]: (r["label"], r["score"]) for r in read(out) if r["source"] == "model"}
    assert model == {
        ids["predicted_twice"]: ("Negative", 0.8),
        ids["predicted_low"]: ("Positive", 0.2),
        ids["predicted_unscored"]: ("Negative", None),
    }
    assert "model 3 (1 without a score)" in capsys.readouterr().out


def test_the_split_keeps_every_task_on_one_side_run_after_run(env, project, tmp_path, capsys):
    out = tmp_path / "split.jsonl"
    argv = [
        "--project",
        str(project["id"]),
        "--format",
        "openai-chat",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "0",
        "--val-fraction",
        "0.5",
        "--seed",
        "7",
    ]
    assert export(*argv) == 0
    train, val = read(tmp_path / "split.meta.jsonl"), read(tmp_path / "split.val.meta.jsonl")
    assert len(read(out)) == len(train) and len(read(tmp_path / "split.val.jsonl")) == len(val)
    assert len(train) + len(val) == 7 and {m["task"] for m in train}.isdisjoint(m["task"] for m in val)
    assert f"train {len(train)}  validation {len(val)}" in capsys.readouterr().out
    assert export(*argv) == 0
    assert read(tmp_path / "split.val.meta.jsonl") == val


def test_a_wrong_token_is_an_error_that_does_not_show_it(studio, project, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token-0123456789")
    assert export("--project", str(project["id"]), "--format", "jsonl", "--output", str(tmp_path / "o.jsonl")) == 2
    err = capsys.readouterr().err
    assert "LABEL_STUDIO_API_KEY" in err and "not-the-token-0123456789" not in err
    assert not (tmp_path / "o.jsonl").exists()
