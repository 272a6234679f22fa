"""Demonstrations come from Label Studio tasks (newest live annotation wins) and from seed files."""

import json

import pytest

from backend.labeling.errors import BadExamples
from backend.labeling.examples import example_from_task, examples_from_tasks, load_seed_file, load_seeds
from backend.labeling.parser import parse_spec
from tests.conftest import MULTI_CONFIG, SEEDS, SENTIMENT_CONFIG

SPEC = parse_spec(SENTIMENT_CONFIG)


def annotation(label, *, id=1, updated="2026-01-01T00:00:00Z", cancelled=False, control="sentiment"):
    return {
        "id": id,
        "was_cancelled": cancelled,
        "updated_at": updated,
        "result": [{"from_name": control, "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
    }


def task(text, *annotations, id=7):
    return {"id": id, "data": {"text": text}, "annotations": list(annotations)}


def test_the_newest_annotation_wins():
    t = task(
        "ok",
        annotation("negative", id=1, updated="2026-01-01T00:00:00Z"),
        annotation("positive", id=2, updated="2026-02-01T00:00:00Z"),
    )
    assert example_from_task(t, SPEC).labels == ("positive",)


def test_cancelled_annotations_are_not_examples():
    t = task(
        "meh",
        annotation("positive", id=3, updated="2026-03-01T00:00:00Z", cancelled=True),
        annotation("negative", id=1),
    )
    assert example_from_task(t, SPEC).labels == ("negative",)
    with pytest.raises(BadExamples, match="cancelled"):
        example_from_task(task("x", annotation("positive", cancelled=True)), SPEC)


def test_skipped_tasks_are_counted_by_reason():
    tasks = [
        task("a", annotation("positive"), id=1),
        task("b", id=2),
        task("c", annotation("banana"), id=3),
        task("d", annotation("positive", control="other"), id=4),
    ]
    examples, skipped = examples_from_tasks(tasks, SPEC)
    assert [e.ref for e in examples] == ["1"]
    assert sum(skipped.values()) == 3
    assert any("banana" in reason for reason in skipped)


def test_the_original_sentiment_seeds_load():
    examples = load_seeds([SEEDS / "sentiment"], SPEC)
    assert [(e.text, e.labels[0]) for e in examples] == [
        ("John is happy.", "positive"),
        ("Mary is sad.", "negative"),
        ("Tom is excited.", "positive"),
        ("Amy is angry.", "negative"),
    ]
    assert all(e.source == "seed" for e in examples)


def test_support_seeds_load_with_their_config():
    spec = parse_spec((SEEDS / "support" / "config.xml").read_text())
    examples = load_seeds([SEEDS / "support"], spec)
    assert len(examples) == 20
    assert {e.labels[0] for e in examples} == set(spec.label_values)


def test_seed_rows_with_label_lists_for_multiple_choice(tmp_path):
    spec = parse_spec(MULTI_CONFIG)
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"text": "match and vote", "label": ["politics", "sports"]}) + "\n")
    assert load_seed_file(path, spec)[0].labels == ("sports", "politics")  # config order


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "x", "label": "banana"}', "not in the config"),
        ('{"text": "x"}', "needs"),
        ("not json", "not JSON"),
        ('{"text": "x", "label": ["positive", "negative"]}', "single-choice"),
        ('{"text": "", "label": "positive"}', "non-empty"),
    ],
)
def test_bad_seed_rows_name_the_line(tmp_path, line, message):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "fine", "label": "positive"}\n' + line + "\n")
    with pytest.raises(BadExamples, match=message) as info:
        load_seed_file(path, SPEC)
    assert "s.jsonl:2" in str(info.value)


def test_label_studio_export_as_seed_file(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task("great", annotation("positive"), id=1), task("unlabeled", id=2)]))
    examples = load_seed_file(path, SPEC)
    assert [(e.text, e.labels, e.source) for e in examples] == [("great", ("positive",), "seed")]


def test_entity_seeds_load_with_their_spans():
    spec = parse_spec((SEEDS / "entities" / "config.xml").read_text())
    examples = load_seeds([SEEDS / "entities"], spec)
    assert len(examples) == 7
    for example in examples:
        entities = example.answer["entities"]
        assert entities and all(example.text[e["start"] : e["end"]] == e["text"] for e in entities)
    priya = next(e for e in examples if e.text.startswith("Priya"))
    assert [e["start"] for e in priya.answer["entities"] if e["text"] == "Priya"] == [0, 18]
