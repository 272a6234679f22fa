"""`evaluate --project`: a Label Studio project's annotations are the gold labels."""

import json

from backend.cli import main
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
    code = main(["evaluate", "--project", str(project["id"]), "--folds", "3", "--output-dir", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["result"]["n"] == 30 and report["meta"]["folds"] == 3
    assert report["meta"]["requests"] == env.stats()["requests"] == 30
    assert set(report["result"]["per_label"]) <= {"HUM", "LOC", "NUM"}
