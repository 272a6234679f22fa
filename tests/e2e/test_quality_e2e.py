"""Annotators review pre-labeled tasks in a real Label Studio; the backend reports how often they kept the
pre-labels, per model_version, label and score, in /quality, /status and the `quality` command.

One real Label Studio 1.23.2 (SQLite), the backend under gunicorn, 2 rq workers, a private redis-server (this
module flushes it) and the fake LLM over HTTP. The tests run in order and share the projects.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import httpx
import pytest
import redis as redis_lib

from backend.commands.cli import main
from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import start_backend, start_redis, start_workers, stop_all
from tests.conftest import stack_env, wait_for_workers
from tests.e2e.test_backend_e2e import TREC_CONFIG, choice, trec_rows, wait_for
from tests.e2e.test_browser_demo import ARTIFACTS, browser  # noqa: F401 (a fixture)
from tests.e2e.test_label_studio_format_e2e import DATA, NER_CONFIG

LABELS = ("HUM", "LOC", "NUM")
OWN = "fsp-"


@pytest.fixture(scope="module")
def stack(studio, logs_dir):
    redis_proc, redis_url = start_redis(logs_dir)
    fake = spawn_fake_llm()
    env = stack_env(
        redis_url, fake.url, PREDICT_DEADLINE=60, LABEL_STUDIO_URL=studio.url, LABEL_STUDIO_API_KEY=studio.token
    )
    workers = start_workers(2, logs_dir, env, prefix="quality-worker")
    backend, url = start_backend(logs_dir, env, workers=2)
    try:
        wait_for_workers(redis_url, 2)
        yield {"env": env, "url": url, "api": studio.api, "redis_url": redis_url, "studio": studio}
    finally:
        stop_all(workers + [backend])
        fake.stop()
        redis_proc.stop()


def own_predictions(api, task_id: int) -> list[dict]:
    found = [p for p in api.list_predictions(task_id=task_id) if p["model_version"].startswith(OWN)]
    return sorted(found, key=lambda p: (p["created_at"], p["id"]))


def label_of(prediction: dict) -> str:
    return prediction["result"][0]["value"]["choices"][0]


def other(label: str) -> str:
    return next(x for x in LABELS if x != label)


def quality_of(stack, project_id: int) -> dict:
    answer = httpx.get(f"{stack['url']}/quality", params={"project": project_id}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def reviews_settle(stack, project_id: int, reviewed: int, accepted: int) -> dict:
    def settled():
        found = quality_of(stack, project_id)
        return found if (found["reviewed"], found["accepted"]) == (reviewed, accepted) else None

    return wait_for(settled, timeout=90, what=f"{reviewed} reviews, {accepted} accepted")


@pytest.fixture(scope="module")
def choices_project(stack):
    """48 tasks pre-labeled; 20 reviewed (15 kept), then the demonstrations they made move model_version, the
    project is pre-labeled again, and 20 more are reviewed (5 of them from the older prediction they started
    from, parent_prediction; 15 kept in all). What each annotator saw and did is kept as the expected truth."""
    api = stack["api"]
    project = api.create_project("Live quality", TREC_CONFIG)
    rows = trec_rows(48)
    task_ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in rows])
    api.connect_ml(project["id"], stack["url"], is_interactive=False)
    api.retrieve_predictions(project["id"])
    truth = []  # (task, annotation id, seen prediction, submitted label)

    def submit(task_id: int, seen: dict, keep: bool, **fields):
        label = label_of(seen) if keep else other(label_of(seen))
        made = api.create_annotation(task_id, choice(label), **fields)
        truth.append({"task": task_id, "annotation": made["id"], "seen": seen, "label": label})

    for i, task_id in enumerate(task_ids[:20]):
        (first,) = own_predictions(api, task_id)
        submit(task_id, first, keep=i < 15)
    first_version = truth[0]["seen"]["model_version"]
    api.retrieve_predictions(project["id"])  # the 20 new demonstrations moved model_version
    for i, task_id in enumerate(task_ids[20:40]):
        listed = own_predictions(api, task_id)
        assert len(listed) == 2 and listed[-1]["model_version"] != first_version
        if i < 5:
            submit(task_id, listed[0], keep=True, parent_prediction=listed[0]["id"])
        else:
            submit(task_id, listed[-1], keep=i < 15)
    return {"id": project["id"], "tasks": task_ids, "truth": truth}


def expected_figures(truth: list[dict]) -> dict:
    """The figures worked out from what the annotators did, independently of the backend's code."""
    pairs = [(t["label"], label_of(t["seen"])) for t in truth]
    per_label = {}
    for label in LABELS:
        predicted = [g for g, p in pairs if p == label]
        gold = [p for g, p in pairs if g == label]
        per_label[label] = {
            "precision": predicted.count(label) / len(predicted) if predicted else 0.0,
            "recall": gold.count(label) / len(gold) if gold else 0.0,
            "support": len(gold),
            "predicted": len(predicted),
        }
    versions = Counter(t["seen"]["model_version"] for t in truth)
    kept = Counter(t["seen"]["model_version"] for t in truth if t["label"] == label_of(t["seen"]))
    return {"per_label": per_label, "versions": dict(versions), "kept": dict(kept)}


def check_figures(found: dict, truth: list[dict]) -> None:
    expected = expected_figures(truth)
    assert (found["reviewed"], found["tasks"], found["accepted"], found["accepted_share"]) == (40, 40, 30, 0.75)
    assert {v: r["reviewed"] for v, r in found["by_model_version"].items()} == expected["versions"]
    assert {v: r["accepted"] for v, r in found["by_model_version"].items()} == expected["kept"]
    assert sorted(expected["versions"].values()) == [15, 25]  # 20 + 5 started from the first version
    for label, row in expected["per_label"].items():
        got = found["controls"]["qtype"]["per_label"][label]
        assert {k: got[k] for k in row} == pytest.approx(row), label
    scored = [t for t in truth if t["seen"]["score"] is not None]
    assert found["scored"] == found["calibration"]["count"] == len(scored) > 0


def test_quality_reports_what_the_annotators_kept_per_version_and_label(stack, choices_project):
    found = reviews_settle(stack, choices_project["id"], 40, 30)
    check_figures(found, choices_project["truth"])
    threshold = found["recommended_threshold"]
    if threshold is not None:  # every review scoring at least it was kept often enough
        kept = [
            t["label"] == label_of(t["seen"])
            for t in choices_project["truth"]
            if t["seen"]["score"] is not None and t["seen"]["score"] >= threshold
        ]
        assert sum(kept) / len(kept) >= found["target"]


def test_status_shows_the_quality_summary(stack, choices_project):
    answer = httpx.get(f"{stack['url']}/status", params={"project": choices_project["id"]}, timeout=30).json()
    (project,) = answer["projects"]
    summary = project["quality"]
    assert (summary["reviewed"], summary["accepted_share"]) == (40, 0.75)
    expected = expected_figures(choices_project["truth"])["versions"]
    assert {v: r["reviewed"] for v, r in summary["by_model_version"].items()} == expected


def test_the_quality_command_computes_the_same_from_label_studio(stack, choices_project, capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", stack["studio"].url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", stack["studio"].token)
    assert main(["quality", "--project", str(choices_project["id"]), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    check_figures(found, choices_project["truth"])
    assert found["not_reviews"] == {}  # every annotation reviews a prediction of this backend
    served = quality_of(stack, choices_project["id"])
    assert {k: found[k] for k in ("by_model_version", "controls", "coverage", "recommended_threshold")} == {
        k: served[k] for k in ("by_model_version", "controls", "coverage", "recommended_threshold")
    }
    assert main(["quality", "--project", str(choices_project["id"])]) == 0
    assert (
        capsys.readouterr().out.splitlines()[0]
        == f"project {choices_project['id']}: 40 reviewed (40 tasks), 30 accepted as-is (0.750)"
    )


def test_an_updated_annotation_is_counted_once(stack, choices_project):
    api, truth = stack["api"], choices_project["truth"]
    kept = truth[0]  # an annotation that kept its prediction
    changed_label = other(kept["label"])
    api.update_annotation(kept["annotation"], choice(changed_label))
    reviews_settle(stack, choices_project["id"], 40, 29)
    api.update_annotation(kept["annotation"], choice(kept["label"]))
    found = reviews_settle(stack, choices_project["id"], 40, 30)
    check_figures(found, truth)


def test_the_figures_survive_a_redis_flush(stack, choices_project):
    redis_lib.Redis.from_url(stack["redis_url"]).flushall()
    first = quality_of(stack, choices_project["id"])
    assert first["rebuilding"] is True
    found = reviews_settle(stack, choices_project["id"], 40, 30)
    check_figures(found, choices_project["truth"])
    assert found["built_at"] is not None


def test_export_min_score_auto_keeps_the_predictions_the_live_figures_back(
    stack, choices_project, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LABEL_STUDIO_URL", stack["studio"].url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", stack["studio"].token)
    out = tmp_path / "sft.jsonl"
    args = [
        "export",
        "--project",
        str(choices_project["id"]),
        "--format",
        "jsonl",
        "--output",
        str(out),
        "--include-predictions",
        "--min-score",
        "auto",
    ]
    monkeypatch.setenv("AUTO_THRESHOLD_MIN_REVIEWS", "1000")
    assert main(args) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "back no threshold yet" in err and "1000 needed (AUTO_THRESHOLD_MIN_REVIEWS)" in err
    monkeypatch.setenv("AUTO_THRESHOLD_MIN_REVIEWS", "5")
    monkeypatch.setenv("QUALITY_TARGET", "0.6")
    scored = [
        (t["seen"]["score"], t["label"] == label_of(t["seen"]))
        for t in choices_project["truth"]
        if t["seen"]["score"] is not None
    ]
    reaching = [s for s, _ in scored if sum(ok for x, ok in scored if x >= s) / sum(x >= s for x, _ in scored) >= 0.6]
    assert reaching, "with these figures some threshold reaches 0.6"
    assert main(args) == 0
    assert f"--min-score auto: {min(reaching):.4g} (" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = [r for r in rows if r["source"] == "model"]
    assert model and all(r["score"] >= min(reaching) for r in model)
    assert sum(r["source"] == "human" for r in rows) == 40


def test_the_quality_page_renders_in_a_browser(stack, choices_project, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    screenshot = tmp_path / "quality-page.png"
    try:
        page.goto(f"{stack['url']}/quality?project={choices_project['id']}")
        assert page.title() == f"Live quality of project {choices_project['id']}"
        assert page.locator("svg[aria-label^='Reliability diagram']").count() == 1
        assert page.locator("svg[aria-label^='Accepted share against coverage']").count() == 1
        assert page.get_by_text("reviewed annotations").count() == 1
        box = page.locator("svg[aria-label^='Reliability diagram']").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 300
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ARTIFACTS / screenshot.name)


# ---- spans ----------------------------------------------------------------------------------------------------


def test_span_reviews_count_exact_and_overlap_per_label(stack):
    """Span annotations kept or trimmed: the per-label span figures are the ones the trims imply."""
    api = stack["api"]
    project = api.create_project("Live quality: spans", NER_CONFIG)
    examples = json.loads((DATA / "ner_export.json").read_text())
    api.rest(
        "POST",
        f"/api/projects/{project['id']}/import",
        json=[
            {"data": e["data"], "annotations": [{"result": e["annotations"][0]["result"]}]}
            for e in examples
            if e.get("annotations")
        ],
    )
    # Names the demonstrations hold, so the fake LLM (nearest demonstration) marks spans in them.
    texts = [
        "Alice flew from Paris to Berlin with Lufthansa.",
        "Bob met Alice in Berlin.",
        "Microsoft hired Bob.",
        "Satya Nadella flew to Paris.",
        "Zoë works for Apple in Köln.",
        "Lufthansa hired Alice in Redmond.",
        "Bob met Zoë in Paris.",
        "Microsoft moved to Berlin.",
        "Paris Hilton met Bob in Köln.",
        "Apple hired Satya Nadella.",
    ]
    task_ids = api.import_tasks(project["id"], [{"text": t} for t in texts])
    api.connect_ml(project["id"], stack["url"], is_interactive=False)
    api.retrieve_predictions(project["id"])
    tp = fp = fn = kept = reviewed = 0
    for task_id in task_ids:
        listed = own_predictions(api, task_id)
        if not listed or not listed[-1]["result"]:
            continue
        regions = listed[-1]["result"]
        submitted = regions
        if reviewed % 2:  # every second review changes something: drops the last span, or relabels the only one
            if len(regions) > 1:
                submitted = regions[:-1]
                fp += 1
            else:
                value = regions[0]["value"]
                relabeled = next(x for x in ("person", "location", "corporation") if x not in value["labels"])
                submitted = [{**regions[0], "value": {**value, "labels": [relabeled]}}]
                fp, fn = fp + 1, fn + 1
        api.create_annotation(task_id, submitted)
        reviewed += 1
        kept += submitted is regions
        tp += sum(r in regions for r in submitted)
    assert reviewed >= 4, "the fake LLM should mark spans in most of these texts"
    found = reviews_settle(stack, project["id"], reviewed, kept)
    exact = found["controls"]["entities"]["exact"]
    assert (exact["tp"], exact["fp"], exact["fn"]) == (tp, fp, fn)
    assert exact["precision"] == pytest.approx(tp / (tp + fp)) and exact["recall"] == pytest.approx(tp / (tp + fn))
    assert found["accepted_share"] == pytest.approx(kept / reviewed) and kept < reviewed
