"""An admin connects the backend to real Label Studio projects; annotators' tasks open pre-labeled.

One real Label Studio 1.23.2 (SQLite), the backend under gunicorn with 2 workers, 2 rq worker processes,
a private redis-server and the fake LLM over HTTP. The tests run in order and share the projects.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from backend.devtools.fake_llm import spawn_fake_llm
from backend.labeling.parser import parse_spec
from backend.labeling.results import prediction_errors
from backend.processes import start_backend, start_workers, stop_all
from tests.conftest import EVAL_DATA, MULTI_CONFIG, stack_env, wait_for_workers

TREC_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="qtype" toName="text" choice="single">
  <Choice value="HUM" hint="a person or a group"/><Choice value="LOC" hint="a place"/>
  <Choice value="NUM" hint="a number, date or amount"/>
</Choices></View>"""


def trec_rows(count: int) -> list[dict]:
    rows = [json.loads(line) for line in (EVAL_DATA / "trec_test.jsonl").read_text().splitlines()]
    return [r for r in rows if r["label"] in ("HUM", "LOC", "NUM")][:count]


def choice(label: str, control: str = "qtype") -> list[dict]:
    return [{"from_name": control, "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(studio, redis_url, logs_dir):
    fake = spawn_fake_llm()
    env = stack_env(redis_url, fake.url, PREDICT_DEADLINE=60)
    workers = start_workers(2, logs_dir, env, prefix="e2e-worker")
    backend, url = start_backend(logs_dir, env, workers=2)
    state = {"fake": fake, "env": env, "url": url, "backend": backend, "api": studio.api, "studio": studio}
    try:
        wait_for_workers(redis_url, 2)
        yield state
    finally:
        stop_all(workers + [state["backend"]])
        fake.stop()


@pytest.fixture(scope="module")
def project_a(stack):
    api = stack["api"]
    project = api.create_project("Question types", TREC_CONFIG)
    rows = trec_rows(40)
    task_ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in rows])
    for task_id, row in list(zip(task_ids, rows))[:8]:
        api.create_annotation(task_id, choice(row["label"]))
    ml = api.connect_ml(project["id"], stack["url"], is_interactive=True, extra={"selection": "nearest-k", "k": 4})
    return {"id": project["id"], "tasks": task_ids, "rows": rows, "ml": ml}


def predictions_by_task(api, project_id: int) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {}
    for prediction in api.list_predictions(project_id=project_id):
        grouped.setdefault(prediction["task"], []).append(prediction)
    return grouped


def backend_version(api, project_id: int) -> str:
    return api.ml_backends(project_id)[0]["model_version"]


def test_retrieve_predictions_prelabels_every_task_with_the_annotations_as_demonstrations(stack, project_a):
    api, fake = stack["api"], stack["fake"]
    fake.reset()
    api.retrieve_predictions(project_a["id"])
    version = backend_version(api, project_a["id"])
    grouped = predictions_by_task(api, project_a["id"])
    unannotated = project_a["tasks"][8:]
    assert all(len(grouped.get(t, [])) == 1 for t in unannotated), {t: len(grouped.get(t, [])) for t in unannotated}
    spec = parse_spec(TREC_CONFIG)
    for task_id in unannotated:
        prediction = grouped[task_id][0]
        assert prediction["model_version"] == version and 0 < prediction["score"] <= 1
        assert prediction["result"][0]["value"]["choices"][0] in ("HUM", "LOC", "NUM")
        assert prediction_errors(spec, prediction["result"]) == []
    demonstrations = {r["text"] for r in project_a["rows"][:8]}
    # Demonstrations are the user/assistant pairs between the instruction and the query.
    prompts = [json.dumps(r["body"]["messages"][1:-1]) for r in fake.requests()]
    shown = {text for text in demonstrations if any(json.dumps(text)[1:-1] in p for p in prompts)}
    assert shown == demonstrations  # nearest-4 of 8: across 40 prompts every annotation is shown


def test_a_second_retrieve_adds_nothing_and_asks_the_model_nothing(stack, project_a):
    api, fake = stack["api"], stack["fake"]
    before = len(api.list_predictions(project_id=project_a["id"]))
    calls = fake.stats()["requests"]
    api.retrieve_predictions(project_a["id"])
    assert len(api.list_predictions(project_id=project_a["id"])) == before
    assert fake.stats()["requests"] == calls


def test_a_ninth_annotation_moves_the_version_and_unchanged_prompts_come_from_the_cache(stack, project_a):
    api, fake = stack["api"], stack["fake"]
    old_version = backend_version(api, project_a["id"])
    ninth, row = project_a["tasks"][8], project_a["rows"][8]
    api.create_annotation(ninth, choice(row["label"]))
    versions_url = f"{stack['url']}/versions?project={project_a['id']}"
    wait_for(lambda: httpx.get(versions_url).json()["model_version"] != old_version, what="the webhook")
    calls = fake.stats()["requests"]
    api.retrieve_predictions(project_a["id"])
    new_version = backend_version(api, project_a["id"])
    assert new_version != old_version
    grouped = predictions_by_task(api, project_a["id"])
    for task_id in project_a["tasks"][9:]:
        assert [p["model_version"] for p in grouped[task_id]].count(new_version) == 1
    asked = fake.stats()["requests"] - calls
    assert 0 < asked < len(project_a["tasks"]), asked  # prompts that did not change were cached


def test_a_multiple_choice_project_on_the_same_backend_gets_its_own_labels(stack):
    api = stack["api"]
    project = api.create_project("Topics", MULTI_CONFIG)
    texts = ["the striker scored", "parliament voted", "a new vaccine", "pasta with basil", "election and match"]
    task_ids = api.import_tasks(project["id"], [{"text": t} for t in texts])
    api.create_annotation(task_ids[0], choice("sports", "topics"))
    api.create_annotation(
        task_ids[1],
        [{"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": ["politics", "science"]}}],
    )
    api.connect_ml(project["id"], stack["url"])
    api.retrieve_predictions(project["id"])
    grouped = predictions_by_task(api, project["id"])
    for task_id in task_ids[2:]:
        assert len(grouped[task_id]) == 1
        assert set(grouped[task_id][0]["result"][0]["value"]["choices"]) <= {"sports", "politics", "science", "food"}


def test_an_opened_task_shows_a_prediction_and_interactive_works_after_a_restart(stack, project_a, logs_dir):
    api = stack["api"]
    task = api.get_task(project_a["tasks"][20])
    assert task["predictions"] and task["predictions"][0]["result"]
    answer = api.interactive(project_a["ml"]["id"], project_a["tasks"][21])
    assert answer["data"]["result"][0]["value"]["choices"][0] in ("HUM", "LOC", "NUM"), answer
    port = stack["backend"].info["port"]
    stack["backend"].stop()
    stack["backend"], _ = start_backend(logs_dir, stack["env"], port=port, workers=2)
    answer = api.interactive(project_a["ml"]["id"], project_a["tasks"][22])
    assert "errors" not in answer and answer["data"]["result"], answer


def test_with_basic_auth_label_studio_with_the_credentials_works_and_others_get_401(stack, logs_dir):
    api = stack["api"]
    env = {
        **stack["env"],
        "BASIC_AUTH_USER": "studio",
        "BASIC_AUTH_PASS": "e2e-basic-pass",
        "WEBHOOK_SECRET": "e2e-hook-secret",
    }
    backend, url = start_backend(logs_dir, env, workers=1)
    try:
        assert httpx.post(url + "/predict", json={}).status_code == 401
        project = api.create_project("Guarded", TREC_CONFIG)
        task_ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in trec_rows(5)])
        api.connect_ml(project["id"], url, auth_user="studio", auth_pass="e2e-basic-pass")
        hook = next(h for h in api.webhooks(project["id"]) if h["url"].startswith(url))
        api.update_webhook(hook["id"], {"X-Webhook-Secret": "e2e-hook-secret"})
        versions = f"{url}/versions?project={project['id']}"
        zero_shot = httpx.get(versions, auth=("studio", "e2e-basic-pass")).json()["model_version"]
        api.create_annotation(task_ids[0], choice("HUM"))
        wait_for(
            lambda: httpx.get(versions, auth=("studio", "e2e-basic-pass")).json()["model_version"] != zero_shot,
            what="the webhook with the secret header",
        )
        api.retrieve_predictions(project["id"])
        grouped = predictions_by_task(api, project["id"])
        assert all(len(grouped.get(t, [])) == 1 for t in task_ids[1:])
    finally:
        backend.stop()


MULTI_CONTROL_CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="PER"/><Label value="ORG"/><Label value="LOC"/></Labels>
<Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
<TextArea name="summary" toName="text" placeholder="One short sentence." maxSubmissions="1"/>
</View>"""

NEWS = [
    (
        "Angela Merkel praised Siemens in Berlin.",
        [("Angela Merkel", "PER"), ("Siemens", "ORG"), ("Berlin", "LOC")],
        "positive",
        "Merkel praised Siemens.",
    ),
    (
        "Protesters blamed Shell for the spill near Lagos.",
        [("Shell", "ORG"), ("Lagos", "LOC")],
        "negative",
        "Shell was blamed for a spill.",
    ),
    (
        "Serena Williams won again in Paris.",
        [("Serena Williams", "PER"), ("Paris", "LOC")],
        "positive",
        "Williams won in Paris.",
    ),
    (
        "Google cut jobs in Dublin, angering staff.",
        [("Google", "ORG"), ("Dublin", "LOC")],
        "negative",
        "Google cut jobs.",
    ),
    ("Angela Merkel visited Lagos with Shell executives.", [], None, None),
    ("Serena Williams thanked Google in Dublin.", [], None, None),
    ("Staff in Berlin were angry at Siemens.", [], None, None),
    ("Paris fans cheered for Serena Williams.", [], None, None),
]


def regions_for(text, entities, sentiment, summary):
    result = []
    for quote, label in entities:
        start = text.index(quote)
        result.append(
            {
                "from_name": "entities",
                "to_name": "text",
                "type": "labels",
                "value": {"start": start, "end": start + len(quote), "text": quote, "labels": [label]},
            }
        )
    result.append({"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [sentiment]}})
    result.append({"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": [summary]}})
    return result


def test_a_project_with_spans_choices_and_free_text_gets_predictions_that_render(stack):
    from label_studio_sdk.label_interface import LabelInterface

    api = stack["api"]
    project = api.create_project("Spans, choices and text", MULTI_CONTROL_CONFIG)
    task_ids = api.import_tasks(project["id"], [{"text": text} for text, *_ in NEWS])
    for task_id, (text, entities, sentiment, summary) in zip(task_ids, NEWS):
        if sentiment:
            api.create_annotation(task_id, regions_for(text, entities, sentiment, summary))
    api.connect_ml(project["id"], stack["url"])
    api.retrieve_predictions(project["id"])
    interface = LabelInterface(MULTI_CONTROL_CONFIG)
    grouped = predictions_by_task(api, project["id"])
    spans = 0
    for task_id, (text, *_rest) in list(zip(task_ids, NEWS))[4:]:
        assert len(grouped.get(task_id, [])) == 1, task_id
        result = grouped[task_id][0]["result"]
        assert interface.validate_prediction({"result": result}, return_errors=True) == []
        assert {r["from_name"] for r in result} >= {"sentiment", "summary"}
        for region in result:
            if region["type"] == "labels":
                spans += 1
                assert text[region["value"]["start"] : region["value"]["end"]] == region["value"]["text"]
    assert spans >= 4  # the entities the annotators marked are found again in the new sentences
