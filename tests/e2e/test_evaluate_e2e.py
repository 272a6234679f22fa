"""`evaluate --project`: a Label Studio project's annotations are the gold labels."""

import json

from backend.commands.cli import main
from tests.conftest import EVAL_DATA
from tests.e2e.test_backend_e2e import TREC_CONFIG, choice, trec_rows


def test_evaluate_a_label_studio_project(studio, env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", studio.token)
    api = studio.api
    project = api.create_project("Evaluate me", TREC_CONFIG)
    rows = trec_rows(30)
    task_ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in rows] + [{"text": "not annotated"}])
    for task_id, row in zip(task_ids, rows):
        api.create_annotation(task_id, choice(row["label"]))
    api.create_annotation(task_ids[0], choice("HUM"), was_cancelled=True)  # a skip does not count
    out = tmp_path / "report"
    code = main(
        ["evaluate", "--project", str(project["id"]), "--folds", "3", "--output-dir", str(out), "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["result"]["n"] == 30 and report["meta"]["folds"] == 3
    assert report["meta"]["requests"] == env.stats()["requests"] == 30
    assert set(report["result"]["per_label"]) <= {"HUM", "LOC", "NUM"}


def test_evaluate_a_span_project(studio, env, monkeypatch, tmp_path, capsys):
    """A NER project: spans annotated in Label Studio are the gold, a task submitted without spans says "none"."""
    from tests.e2e.test_label_studio_format_e2e import NER_CONFIG, wnut_annotation

    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", studio.token)
    rows = [json.loads(line) for line in (EVAL_DATA / "wnut17_test.jsonl").read_text().splitlines()]
    kept = [r for r in rows if all(e["type"] in ("person", "location", "corporation") for e in r["label"])][:24]
    api = studio.api
    project = api.create_project("Evaluate spans", NER_CONFIG)
    for task_id, row in zip(api.import_tasks(project["id"], [{"text": r["text"]} for r in kept]), kept):
        api.create_annotation(task_id, wnut_annotation(row))
    out = tmp_path / "report"
    code = main(
        ["evaluate", "--project", str(project["id"]), "--folds", "3", "--output-dir", str(out), "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    report = json.loads((out / "evaluation.json").read_text())
    spans = report["result"]["controls"]["entities"]
    assert report["result"]["n"] == spans["n"] == 24  # the tasks without entities are gold too
    assert spans["exact"]["tp"] + spans["exact"]["fn"] == sum(len(r["label"]) for r in kept)
    assert "entities (Labels, 24 tasks)" in printed and "  person: P " in printed
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 24
