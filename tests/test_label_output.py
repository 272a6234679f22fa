"""`label` output for every config: rows whose spans carry start, end, text and labels, and `--format
label-studio` task lists whose predictions Label Studio's own validator accepts; both resume."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.commands.cli import main
from backend.labeling.parser import parse_spec
from backend.labeling.results import prediction_errors
from backend.labeling.rows import read_values, row_value
from tests.conftest import SEEDS

DATA = Path(__file__).parent / "data"
NER_CONFIG = DATA / "ner_config.xml"
MIXED_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="entities" toName="text"><Label value="person"/><Label value="location"/></Labels>
  <Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <Rating name="stars" toName="text"/>
</View>"""
MIXED_SEEDS = [
    {
        "text": "Bob loved Paris",
        "label": {
            "entities": [{"text": "Bob", "label": "person"}, {"text": "Paris", "label": "location"}],
            "sentiment": "positive",
            "stars": 5,
        },
    },
    {
        "text": "Alice hated Rome",
        "label": {
            "entities": [{"text": "Alice", "label": "person"}, {"text": "Rome", "label": "location"}],
            "sentiment": "negative",
            "stars": 1,
        },
    },
]
TASKS = ["Bob met Alice in Rome 🇮🇹 and Köln", "Paris loved Bob, and Bob loved Paris", "Nothing to see"]


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def label(tmp_path: Path, config: Path, seeds: Path, rows: list, *extra: str, out: str = "out.jsonl") -> tuple:
    source = write_rows(tmp_path / "tasks.jsonl", rows)
    output = tmp_path / out
    code = main(
        [
            "label",
            "--config",
            str(config),
            "--seeds",
            str(seeds),
            "--input",
            str(source),
            "--output",
            str(output),
            "--no-progress",
            *extra,
        ]
    )
    return code, output


def mixed(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "mixed.xml").write_text(MIXED_CONFIG)
    return tmp_path / "mixed.xml", write_rows(tmp_path / "seeds.jsonl", MIXED_SEEDS)


def test_span_rows_carry_offsets_text_and_labels(env, tmp_path):
    code, out = label(tmp_path, NER_CONFIG, DATA / "ner_export.json", [{"text": t} for t in TASKS])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    spans = rows[1]["label"]["entities"]
    assert spans and all(set(s) == {"start", "end", "text", "labels"} for s in spans)
    assert all(s["text"] == r["text"][s["start"] : s["end"]] for r in rows for s in r["label"]["entities"])
    # each appearance of a name is its own span
    assert sorted(s["start"] for s in spans if s["text"] == "Bob") == [12, 21]
    assert rows[2]["label"] == {"entities": []}


def test_multi_control_rows_give_each_control_its_value(env, tmp_path):
    config, seeds = mixed(tmp_path)
    code, out = label(tmp_path, config, seeds, [{"text": t} for t in TASKS])
    assert code == 0
    spec = parse_spec(MIXED_CONFIG)
    for row in (json.loads(line) for line in out.read_text().splitlines()):
        assert set(row["label"]) <= {"entities", "sentiment", "stars"}
        assert row["label"]["sentiment"] in ("positive", "negative") and 1 <= row["label"]["stars"] <= 5
        # the row form reads back as the same values (a labeled file can be seeds, gold, export input)
        assert read_values(row["label"], spec, row["text"])["sentiment"] == [row["label"]["sentiment"]]


def test_label_studio_format_is_a_task_list_the_sdk_validates(env, tmp_path):
    config, seeds = mixed(tmp_path)
    rows = [
        {"text": TASKS[0]},
        {"data": {"text": TASKS[1], "source": "crm"}, "id": 77, "meta": {"batch": 3}},
        {"other": "no text here"},
    ]
    code, out = label(tmp_path, config, seeds, rows, "--format", "label-studio", out="tasks.json")
    assert code == 1  # the row without text failed
    tasks = json.loads(out.read_text())
    assert [t["data"] for t in tasks] == [
        {"text": TASKS[0]},
        {"text": TASKS[1], "source": "crm"},
        {"other": "no text here"},
    ]
    assert tasks[1]["meta"] == {"batch": 3} and "id" not in tasks[1]
    assert tasks[2]["predictions"] == []
    spec = parse_spec(MIXED_CONFIG)
    for task in tasks[:2]:
        (prediction,) = task["predictions"]
        assert set(prediction) == {"result", "score", "model_version"}
        assert prediction["model_version"].startswith("fsp-") and prediction_errors(spec, prediction["result"]) == []
        text = task["data"]["text"]
        for region in prediction["result"]:
            value = region["value"]
            if region["type"] == "labels":
                assert value["text"] == text[value["start"] : value["end"]]
        assert {r["from_name"] for r in prediction["result"]} >= {"sentiment", "stars"}


def test_label_studio_format_for_a_choices_config_and_its_resume(env, tmp_path):
    config = SEEDS / "support" / "config.xml"
    tickets = [json.loads(line) for line in (SEEDS / "support" / "tasks.jsonl").read_text().splitlines()][:4]
    code, out = label(tmp_path, config, SEEDS / "support", tickets, "--format", "label-studio", out="t.json")
    assert code == 0
    tasks = json.loads(out.read_text())
    spec = parse_spec(config.read_text())
    assert [t["data"] for t in tasks] == tickets
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction_errors(spec, prediction["result"]) == [] and 0 < prediction["score"] <= 1
        assert prediction["result"][0]["value"]["choices"][0] in spec.label_values
    before = env.stats()["requests"]
    code, again = label(tmp_path, config, SEEDS / "support", tickets, "--format", "label-studio", out="t.json")
    assert code == 0 and env.stats()["requests"] == before and json.loads(again.read_text()) == tasks


def test_a_failed_task_is_asked_again_on_the_next_run(env, tmp_path):
    config, seeds = mixed(tmp_path)
    env.configure(rate_malformed=1.0)
    code, out = label(tmp_path, config, seeds, [{"text": TASKS[0]}], "--format", "label-studio", out="t.json")
    assert code == 1 and json.loads(out.read_text())[0]["predictions"] == []
    env.configure(rate_malformed=0.0)
    code, out = label(tmp_path, config, seeds, [{"text": TASKS[0]}], "--format", "label-studio", out="t.json")
    assert code == 0 and len(json.loads(out.read_text())[0]["predictions"]) == 1


def test_a_file_that_is_not_a_task_list_is_not_overwritten(env, tmp_path, capsys):
    config, seeds = mixed(tmp_path)
    (tmp_path / "t.json").write_text('{"not": "a list"}')
    code, _ = label(tmp_path, config, seeds, [{"text": TASKS[0]}], "--format", "label-studio", out="t.json")
    assert code == 2 and "not a JSON list of Label Studio tasks" in capsys.readouterr().err
    assert (tmp_path / "t.json").read_text() == '{"not": "a list"}'


WORDS = st.text(alphabet="abcXYZéü🇩🇪 ", min_size=1, max_size=8)
LABEL_SETS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-_ ", min_size=1, max_size=12).map(str.strip).filter(bool),
    min_size=1,
    max_size=6,
    unique=True,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=8), LABEL_SETS, st.data())
def test_spans_survive_the_row_form_both_ways(words, labels, data):
    """Annotated spans -> row form -> read back: the same spans, wherever they are (inside words, repeated),
    whatever the label set."""
    spec = parse_spec(
        '<View><Text name="text" value="$text"/><Labels name="entities" toName="text">'
        + "".join(f'<Label value="{label}"/>' for label in labels)
        + "</Labels></View>"
    )
    (control,) = spec.controls
    text = " ".join(words)
    if not text.strip():
        return
    starts = data.draw(st.lists(st.integers(0, len(text) - 1), max_size=4, unique=True))
    result = []
    for start in starts:
        end = data.draw(st.integers(start + 1, len(text)))
        result.append(
            {
                "from_name": "entities",
                "to_name": "text",
                "type": "labels",
                "value": {
                    "start": start,
                    "end": end,
                    "text": text[start:end],
                    "labels": [data.draw(st.sampled_from(control.label_values))],
                },
            }
        )
    value = control.from_result(result, text)
    if value is None:
        return
    row = row_value(control, value, text)
    assert all(s["text"] == text[s["start"] : s["end"]] for s in row)
    assert read_values({"entities": row}, spec, text)["entities"] == value
