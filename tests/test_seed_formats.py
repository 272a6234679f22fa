"""Seeds for every supported config keep their answers: a Label Studio export of span annotations, JSONL rows
with spans (offsets, quotes, token indexes) and multi-control rows; seeds without a value are skipped, counted,
and never sent as an empty demonstration.

tests/data/ner_export.json is a real Label Studio 1.23.2 JSON export (tests/data/README.md says how it was made).
"""

import json
from pathlib import Path

import pytest

from backend.commands.cli import main
from backend.labeling.errors import BadExamples
from backend.labeling.examples import read_seed_file
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import SPAN_TEMPLATE, render_query
from tests.conftest import EVAL_DATA
from tests.conftest import SEEDS as SEEDS_DIR

DATA = Path(__file__).parent / "data"
NER_CONFIG = (DATA / "ner_config.xml").read_text()
NER = parse_spec(NER_CONFIG)
MIXED_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="entities" toName="text"><Label value="person"/><Label value="location"/></Labels>
  <Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <TextArea name="summary" toName="text"/>
  <Taxonomy name="topic" toName="text">
    <Choice value="Travel"><Choice value="Flights"/></Choice><Choice value="Work"/>
  </Taxonomy>
  <Rating name="stars" toName="text" maxRating="5"/>
  <Number name="people" toName="text" min="0"/>
</View>"""
MIXED = parse_spec(MIXED_CONFIG)


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def spans_of(example) -> set[tuple[int, int, str, str]]:
    """(start, end, text, label) of every span in an example's answer."""
    return {(e["start"], e["end"], e["text"], e["label"]) for e in example.answer["entities"]}


def test_a_label_studio_export_keeps_every_span_of_every_annotation():
    export = json.loads((DATA / "ner_export.json").read_text())
    examples, skipped = read_seed_file(DATA / "ner_export.json", NER)
    by_text = {e.text: e for e in examples}
    for task in export:
        live = [a for a in task["annotations"] if not a["was_cancelled"]]
        if not live or not live[0]["result"]:
            assert task["data"]["text"] not in by_text
            continue
        expected = {
            (r["value"]["start"], r["value"]["end"], r["value"]["text"], r["value"]["labels"][0])
            for r in live[0]["result"]
        }
        assert spans_of(by_text[task["data"]["text"]]) == expected
    assert len(examples) == 4 and all(e.source == "seed" for e in examples)
    # the unannotated, the skipped and the one submitted with no span are counted, not sent
    assert sum(skipped.values()) == 3


def test_demonstrations_in_the_request_carry_the_seed_entities(env, tmp_path, capsys):
    """The issue's case: every demonstration in the prompt answered `{}` when the seeds were an export."""
    tasks = write_rows(tmp_path / "tasks.jsonl", [{"text": "Alice flew to Berlin for Lufthansa."}])
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "label",
            "--config",
            str(DATA / "ner_config.xml"),
            "--seeds",
            str(DATA / "ner_export.json"),
            "--input",
            str(tasks),
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    assert "skipped 3" in capsys.readouterr().err
    (request,) = env.requests()
    messages = request["body"]["messages"]
    shown = {m["content"]: json.loads(a["content"]) for m, a in zip(messages[1:-1:2], messages[2:-1:2])}
    export = json.loads((DATA / "ner_export.json").read_text())
    seeded = {
        t["data"]["text"]: t["annotations"][0]["result"]
        for t in export
        if t["annotations"] and not t["annotations"][0]["was_cancelled"] and t["annotations"][0]["result"]
    }
    assert len(shown) == len(seeded) == 4
    for text, result in seeded.items():
        answer = shown[render_query(SPAN_TEMPLATE, text)]
        assert answer["entities"], f"an empty demonstration was sent for {text!r}"
        assert sorted((e["text"], e["label"]) for e in answer["entities"]) == sorted(
            (r["value"]["text"], r["value"]["labels"][0]) for r in result
        )
    # "Paris" is both a person's name and the city: the city is the second appearance
    paris = shown[render_query(SPAN_TEMPLATE, "Paris Hilton flew from Paris to Berlin on Lufthansa.")]["entities"]
    assert {"text": "Paris", "label": "location", "occurrence": 2} in paris


def test_jsonl_seeds_give_spans_as_offsets_quotes_or_tokens(tmp_path):
    text = "Bob met Bob in Paris"
    path = write_rows(
        tmp_path / "seeds.jsonl",
        [
            {"text": text, "label": [{"start": 8, "end": 11, "labels": ["person"]}]},
            {"text": text, "label": {"entities": [{"start": 15, "end": 20, "text": "Paris", "label": "location"}]}},
            {"text": text, "label": [{"text": "Bob", "label": "person", "occurrence": 2}]},
            {"text": text, "label": [{"text": "bob", "label": "person"}]},  # every appearance, case aside
            {
                "text": text,
                "tokens": text.split(),
                "label": [{"type": "location", "start": 4, "end": 5, "text": "Paris"}],
            },
        ],
    )
    examples, skipped = read_seed_file(path, NER)
    assert [spans_of(e) for e in examples] == [
        {(8, 11, "Bob", "person")},
        {(15, 20, "Paris", "location")},
        {(8, 11, "Bob", "person")},
        {(0, 3, "Bob", "person"), (8, 11, "Bob", "person")},
        {(15, 20, "Paris", "location")},
    ]
    assert not skipped


def test_the_wnut17_file_reads_as_seeds():
    path = EVAL_DATA / "wnut17_test.jsonl"
    examples, skipped = read_seed_file(
        path,
        parse_spec(
            NER_CONFIG.replace(
                '<Label value="person"/><Label value="location"/><Label value="corporation"/>',
                "".join(
                    f'<Label value="{t}"/>'
                    for t in ("person", "group", "location", "creative-work", "product", "corporation")
                ),
            )
        ),
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    with_entities = [r for r in rows if r["label"]]
    assert len(examples) == len(with_entities) and sum(skipped.values()) == len(rows) - len(with_entities)
    for example, row in zip(examples, with_entities):
        assert sorted(e["text"] for e in example.answer["entities"]) == sorted(e["text"] for e in row["label"])


@pytest.mark.parametrize(
    "row, message",
    [
        ({"text": "Bob", "label": [{"start": 0, "end": 9, "labels": ["person"]}]}, "not inside the text"),
        (
            {"text": "Bob", "label": [{"start": 0, "end": 3, "text": "Rob", "labels": ["person"]}]},
            "'Bob' in the task text",
        ),
        ({"text": "Bob", "label": [{"start": 0, "end": 3, "labels": ["alien"]}]}, "'alien' is not in the config"),
        ({"text": "Bob", "label": [{"text": "Alice", "label": "person"}]}, "not in the row's text"),
        ({"text": "Bob", "label": [{"start": 0, "end": 3}]}, 'needs "labels"'),
        ({"text": "Bob", "label": "person"}, "list of spans"),
        ({"text": "a b", "tokens": ["a", "c"], "label": [{"start": 0, "end": 1, "labels": ["person"]}]}, "joined"),
    ],
)
def test_bad_span_rows_say_what_is_wrong_and_where(tmp_path, row, message):
    path = write_rows(tmp_path / "s.jsonl", [{"text": "fine", "label": []}, row])
    with pytest.raises(BadExamples, match=message) as info:
        read_seed_file(path, NER)
    assert "s.jsonl:2" in str(info.value)


def test_a_multi_control_row_keeps_every_control(tmp_path):
    text = "Bob loved the flight to Paris with 3 friends"
    row = {
        "text": text,
        "label": {
            "entities": [{"text": "Paris", "label": "location"}],
            "sentiment": "positive",
            "summary": "a happy trip",
            "topic": [["Travel", "Flights"]],
            "stars": 5,
            "people": 4,
        },
    }
    (example,), skipped = read_seed_file(write_rows(tmp_path / "seeds.jsonl", [row]), MIXED)
    assert example.answer == {
        "entities": [{"text": "Paris", "label": "location", "start": 24, "end": 29}],
        "sentiment": ["positive"],
        "summary": ["a happy trip"],
        "topic": [["Travel", "Flights"]],
        "stars": 5,
        "people": 4,
    }
    assert not skipped


@pytest.mark.parametrize(
    "label, message",
    [
        ({"sentiment": "meh"}, "'meh' is not in the config"),
        ({"stars": 9}, "rating 9"),
        ({"topic": [["Work", "Flights"]]}, "not in the config's taxonomy"),
        ({"people": -1}, "below the minimum"),
        ({"mood": "x"}, "'mood', which is not a control"),
        ("positive", "must be an object"),
    ],
)
def test_bad_multi_control_rows_are_refused(tmp_path, label, message):
    path = write_rows(tmp_path / "s.jsonl", [{"text": "Bob in Paris", "label": label}])
    with pytest.raises(BadExamples, match=message):
        read_seed_file(path, MIXED)


def test_seeds_without_a_value_are_skipped_and_counted_never_sent(env, tmp_path, capsys):
    seeds = write_rows(
        tmp_path / "seeds.jsonl",
        [
            {"text": "Bob is here", "label": {"entities": [{"text": "Bob", "label": "person"}]}},
            {"text": "Nobody is here", "label": {"entities": []}},
            {"text": "Nothing either", "label": {}},
            {"text": "Nor here", "label": None},
        ],
    )
    examples, skipped = read_seed_file(seeds, MIXED)
    assert [e.text for e in examples] == ["Bob is here"] and sum(skipped.values()) == 3
    (tmp_path / "mixed.xml").write_text(MIXED_CONFIG)
    tasks = write_rows(tmp_path / "tasks.jsonl", [{"text": "Bob is there"}])
    assert (
        main(
            [
                "label",
                "--config",
                str(tmp_path / "mixed.xml"),
                "--seeds",
                str(seeds),
                "--input",
                str(tasks),
                "--output",
                str(tmp_path / "out.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "seeds: skipped 3" in capsys.readouterr().err
    (request,) = env.requests()
    answers = [m["content"] for m in request["body"]["messages"] if m["role"] == "assistant"]
    assert answers == ['{"entities": [{"text": "Bob", "label": "person", "occurrence": null}]}']


README_MULTI = """<View><Text name="text" value="$text"/>
  <Labels name="entities" toName="text"><Label value="location"/></Labels>
  <Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <TextArea name="summary" toName="text"/>
  <Taxonomy name="topic" toName="text"><Choice value="Travel"><Choice value="Cities"/></Choice></Taxonomy>
  <Rating name="stars" toName="text"/></View>"""


def test_the_readmes_seed_examples_read_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Seed and gold files", 1)[1].split("\n\n", 3)[2]
    examples = [line.rsplit("| `", 1)[1].rstrip("` |") for line in table.splitlines() if line.count("`{") >= 1]
    configs = [
        SEEDS_DIR / "support" / "config.xml",
        SEEDS_DIR / "entities" / "config.xml",
        SEEDS_DIR / "entities" / "config.xml",
        SEEDS_DIR / "entities" / "config.xml",
        None,
    ]
    assert len(examples) == len(configs) == 5
    for example, config in zip(examples, configs):
        spec = parse_spec(config.read_text() if config else README_MULTI)
        (read,), skipped = read_seed_file(write_rows(tmp_path / "s.jsonl", [json.loads(example)]), spec)
        assert read.has_answer and not skipped


def test_every_controls_row_form_reads_back_as_the_same_values(tmp_path):
    from backend.labeling.rows import read_values, row_label

    text = "Bob loved the flight to Paris with Bob's 3 friends"
    label = {
        "entities": [{"text": "Bob", "label": "person"}, {"start": 24, "end": 29, "labels": ["location"]}],
        "sentiment": "positive",
        "summary": ["a happy trip", "Paris"],
        "topic": [["Travel", "Flights"], ["Work"]],
        "stars": 4,
        "people": 3.5,
    }
    values = read_values(label, MIXED, text)
    written = row_label(MIXED, None, values, text)
    assert read_values(written, MIXED, text) == values
    assert [s["start"] for s in written["entities"]] == [0, 24, 35]
    assert written["sentiment"] == "positive" and written["stars"] == 4 and written["people"] == 3.5
