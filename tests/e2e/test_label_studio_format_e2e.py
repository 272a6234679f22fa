"""Files for and from a real Label Studio 1.23.2: what `label --format label-studio` writes imports as
pre-annotated tasks (spans, several controls, choices), and a project's span annotations exported as JSON
teach the model as seeds."""

from __future__ import annotations

import json
from pathlib import Path

from backend.commands.cli import main
from backend.labeling.parser import parse_spec
from backend.labeling.results import prediction_errors
from tests.conftest import EVAL_DATA, SEEDS
from tests.test_label_output import MIXED_CONFIG, MIXED_SEEDS, write_rows

DATA = Path(__file__).resolve().parents[1] / "data"
NER_CONFIG = (DATA / "ner_config.xml").read_text()
TEXTS = [
    "Alice flew from Paris to Berlin with Lufthansa 🇩🇪.",
    "Bob met Bob in Köln.",
    "Microsoft hired Zoë.",
    "Nothing happened today.",
]


def label_to_studio_file(tmp_path: Path, config: str, seeds: Path, rows: list[dict]) -> list[dict]:
    (tmp_path / "config.xml").write_text(config)
    source = write_rows(tmp_path / "tasks.jsonl", rows)
    out = tmp_path / "tasks.json"
    code = main(
        [
            "label",
            "--config",
            str(tmp_path / "config.xml"),
            "--seeds",
            str(seeds),
            "--input",
            str(source),
            "--output",
            str(out),
            "--format",
            "label-studio",
            "--no-progress",
        ]
    )
    assert code == 0
    return json.loads(out.read_text())


def import_and_read_back(studio, title: str, config: str, tasks: list[dict]) -> list[dict]:
    api = studio.api
    project = api.create_project(title, config)
    answer = api.rest("POST", f"/api/projects/{project['id']}/import", json=tasks)
    assert answer["task_count"] == len(tasks)
    return sorted(api.list_tasks(project["id"]), key=lambda t: t["id"])


def check_imported(file_tasks: list[dict], stored: list[dict], config: str) -> None:
    """One prediction per task, stored exactly as the file had it, every span's text at its offsets."""
    spec = parse_spec(config)
    assert [t["data"] for t in stored] == [t["data"] for t in file_tasks]
    for written, task in zip(file_tasks, stored):
        (prediction,) = task["predictions"]
        (expected,) = written["predictions"]
        assert prediction["result"] == expected["result"]
        assert prediction["model_version"] == expected["model_version"] and prediction["score"] == expected["score"]
        assert prediction_errors(spec, prediction["result"]) == []
        text = task["data"][spec.data_key]
        for region in prediction["result"]:
            if region["type"] == "labels":
                assert region["value"]["text"] == text[region["value"]["start"] : region["value"]["end"]]


def test_a_ner_file_imports_with_its_spans(studio, env, tmp_path):
    tasks = label_to_studio_file(tmp_path, NER_CONFIG, DATA / "ner_export.json", [{"text": t} for t in TEXTS])
    assert sum(len(t["predictions"][0]["result"]) for t in tasks) >= 5  # Paris, Berlin, Lufthansa, Bob x2, ...
    stored = import_and_read_back(studio, "NER import", NER_CONFIG, tasks)
    check_imported(tasks, stored, NER_CONFIG)
    bobs = [r["value"] for r in stored[1]["predictions"][0]["result"] if r["value"]["text"] == "Bob"]
    assert sorted(v["start"] for v in bobs) == [0, 8]


def test_a_multi_control_file_imports_with_every_control(studio, env, tmp_path):
    seeds = write_rows(tmp_path / "seeds.jsonl", MIXED_SEEDS)
    tasks = label_to_studio_file(tmp_path, MIXED_CONFIG, seeds, [{"text": t} for t in TEXTS[:3]])
    stored = import_and_read_back(studio, "Mixed import", MIXED_CONFIG, tasks)
    check_imported(tasks, stored, MIXED_CONFIG)
    for task in stored:
        assert {r["from_name"] for r in task["predictions"][0]["result"]} >= {"sentiment", "stars"}


def test_a_choices_file_imports_with_its_scores(studio, env, tmp_path):
    config = (SEEDS / "support" / "config.xml").read_text()
    rows = [json.loads(line) for line in (SEEDS / "support" / "tasks.jsonl").read_text().splitlines()][:5]
    tasks = label_to_studio_file(tmp_path, config, SEEDS / "support", rows)
    stored = import_and_read_back(studio, "Choices import", config, tasks)
    check_imported(tasks, stored, config)
    assert all(0 < t["predictions"][0]["score"] <= 1 for t in stored)


def span(text: str, quote: str, label: str, nth: int = 0) -> dict:
    start = -1
    for _ in range(nth + 1):
        start = text.index(quote, start + 1)
    return {
        "from_name": "entities",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(quote), "text": quote, "labels": [label]},
    }


def wnut_annotation(row: dict) -> list[dict]:
    """A WNUT-17 row's entities as an annotator marks them in Label Studio (a repeated name: the next one)."""
    seen: dict[str, int] = {}
    result = []
    for entity in row["label"]:
        result.append(span(row["text"], entity["text"], entity["type"], seen.get(entity["text"], 0)))
        seen[entity["text"]] = seen.get(entity["text"], 0) + 1
    return result


def test_a_projects_span_export_teaches_as_seeds(studio, env, tmp_path):
    """Annotators mark entities in Label Studio; its JSON export, given as seeds, puts them in the prompt."""
    rows = [json.loads(line) for line in (EVAL_DATA / "wnut17_test.jsonl").read_text().splitlines()]
    annotated = [
        r for r in rows if r["label"] and all(e["type"] in ("person", "location", "corporation") for e in r["label"])
    ][:8]
    api = studio.api
    project = api.create_project("NER seeds from an export", NER_CONFIG)
    ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in annotated])
    for task_id, row in zip(ids, annotated):
        api.create_annotation(task_id, wnut_annotation(row))
    export = api.rest("GET", f"/api/projects/{project['id']}/export", params={"exportType": "JSON"})
    seeds = tmp_path / "export.json"
    seeds.write_text(json.dumps(export))
    (tmp_path / "config.xml").write_text(NER_CONFIG)
    source = write_rows(tmp_path / "tasks.jsonl", [{"text": "a new sentence"}])
    assert (
        main(
            [
                "label",
                "--config",
                str(tmp_path / "config.xml"),
                "--seeds",
                str(seeds),
                "--input",
                str(source),
                "--output",
                str(tmp_path / "out.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )
    (request,) = env.requests()
    answers = [json.loads(m["content"]) for m in request["body"]["messages"] if m["role"] == "assistant"]
    assert len(answers) == len(annotated)
    shown = sorted((e["text"], e["label"]) for a in answers for e in a["entities"])
    assert shown == sorted((e["text"], e["type"]) for r in annotated for e in r["label"])
