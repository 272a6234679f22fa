"""`export` for spans and multi-control configs: the answer in the JSON form the labeler asks for, the prompt the
labeler sends, rows from a real Label Studio export and from `label` output."""

import json
from pathlib import Path

from backend.commands.cli import main
from backend.commands.export import render_row, rows_from_labeled, rows_from_tasks
from backend.labeling.examples import read_seed_file
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, build_messages, for_config
from tests.test_export import openai_chat_problems

DATA = Path(__file__).parent / "data"
NER = parse_spec((DATA / "ner_config.xml").read_text())
PROMPT = PromptSettings(model="gpt-4o-mini")
EXPORT = json.loads((DATA / "ner_export.json").read_text())


def span(start, end, label, text):
    return {
        "from_name": "entities",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text, "labels": [label]},
    }


def test_rows_from_a_label_studio_export_answer_as_the_labeler_asks():
    selection = rows_from_tasks(EXPORT, NER)
    assert len(selection.rows) == 4
    assert dict(selection.skipped) == {"cancelled": 1, "no_value": 1}  # the unannotated task is no row at all
    examples = {e.text: e for e in read_seed_file(DATA / "ner_export.json", NER)[0]}
    for row in selection.rows:
        messages = render_row(row, NER, PROMPT, "openai-chat")["messages"]
        assert openai_chat_problems(json.dumps({"messages": messages})) == []
        # exactly the labeler's prompt for this text, with this example as the answer it learns
        labeler_view = build_messages(NER, [examples[row.text]], "", for_config(PROMPT, NER))
        assert messages[0] == labeler_view[0]
        assert messages[1:] == labeler_view[1:3]
        assert messages[1]["content"].startswith("Text: ") and json.loads(messages[2]["content"])["entities"]


def test_jsonl_rows_give_spans_with_offsets():
    selection = rows_from_tasks(EXPORT, NER)
    for row in selection.rows:
        line = render_row(row, NER, PROMPT, "jsonl")
        spans = line["label"]["entities"]
        assert spans and all(s["text"] == row.text[s["start"] : s["end"]] for s in spans)
        task = next(t for t in EXPORT if t["id"] == row.task)
        assert sorted((s["start"], s["end"], s["labels"][0]) for s in spans) == sorted(
            (r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in task["annotations"][0]["result"]
        )


def test_annotators_who_mark_different_spans_disagree():
    text = "Bob met Alice"
    task = {
        "id": 1,
        "data": {"text": text},
        "annotations": [
            {"id": 1, "result": [span(0, 3, "person", "Bob")]},
            {"id": 2, "result": [span(0, 3, "person", "Bob"), span(8, 13, "person", "Alice")]},
        ],
    }
    agree = {
        "id": 2,
        "data": {"text": text},
        "annotations": [
            {"id": 3, "result": [span(8, 13, "person", "Alice")]},
            {"id": 4, "result": [span(8, 13, "person", "Alice")]},
        ],
    }
    selection = rows_from_tasks([task, agree], NER)
    assert dict(selection.skipped) == {"disagreement": 1}
    assert [(r.task, r.annotator_count) for r in selection.rows] == [(2, 2)]


def test_predictions_of_unannotated_tasks_become_model_rows():
    task = {"id": 5, "data": {"text": "Bob is here"}, "annotations": []}
    prediction = {"id": 9, "task": 5, "score": None, "model_version": "fsp-1", "result": [span(0, 3, "person", "Bob")]}
    selection = rows_from_tasks([task], NER, [prediction], min_score=0.0)
    (row,) = selection.rows
    assert (
        row.source == "model"
        and render_row(row, NER, PROMPT, "alpaca")["output"]
        == '{"entities": [{"text": "Bob", "label": "person", "occurrence": null}]}'
    )


def test_export_of_a_labeled_multi_control_file(env, tmp_path):
    config = (
        '<View><Text name="text" value="$text"/><Labels name="who" toName="text"><Label value="PER"/></Labels>'
        '<Choices name="mood" toName="text"><Choice value="happy"/><Choice value="sad"/></Choices></View>'
    )
    (tmp_path / "c.xml").write_text(config)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        json.dumps({"text": "Bob is happy", "label": {"who": [{"text": "Bob", "label": "PER"}], "mood": "happy"}})
        + "\n"
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"text": "Bob is sad", "label": {"who": [{"start": 0, "end": 3, "labels": ["PER"]}], "mood": "sad"}})
        + "\n"
        + json.dumps({"text": "Bob and Ann are happy"})
        + "\n"
    )
    labeled = tmp_path / "labeled.jsonl"
    assert (
        main(
            [
                "label",
                "--config",
                str(tmp_path / "c.xml"),
                "--seeds",
                str(seeds),
                "--input",
                str(tasks),
                "--output",
                str(labeled),
                "--no-progress",
            ]
        )
        == 0
    )
    spec = parse_spec(config)
    selection = rows_from_labeled(
        [json.loads(line) for line in labeled.read_text().splitlines()], spec, include_predictions=True, min_score=0.0
    )
    human, model = selection.rows
    assert (human.source, model.source) == ("human", "model")
    assert json.loads(render_row(human, spec, PROMPT, "alpaca")["output"]) == {
        "who": [{"text": "Bob", "label": "PER", "occurrence": None}],
        "mood": "sad",
    }
    out = tmp_path / "sft.jsonl"
    assert (
        main(
            [
                "export",
                "--input",
                str(labeled),
                "--config",
                str(tmp_path / "c.xml"),
                "--format",
                "openai-chat",
                "--output",
                str(out),
                "--include-predictions",
                "--min-score",
                "0",
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(openai_chat_problems(line) == [] for line in lines)
    assert json.loads(json.loads(lines[1])["messages"][-1]["content"])["who"][0]["text"] == "Bob"
