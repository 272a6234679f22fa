"""The backend's endpoints with real Redis, a real rq worker process and the fake LLM over HTTP."""

import base64
import json

import pytest

from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import start_workers, stop_all
from backend.settings import Settings
from backend.web.ml_adapter import create_app
from tests.conftest import MULTI_CONFIG, SENTIMENT_CONFIG, clean_redis, stack_env, wait_for_workers


@pytest.fixture(scope="module")
def stack(redis_url, logs_dir):
    fake = spawn_fake_llm()
    env = stack_env(redis_url, fake.url)
    workers = start_workers(1, logs_dir, env, prefix="api-worker")
    try:
        wait_for_workers(redis_url, 1)
        yield {"env": env, "fake": fake, "redis_url": redis_url}
    finally:
        stop_all(workers)
        fake.stop()


@pytest.fixture
def client(stack):
    clean_redis(stack["redis_url"])
    stack["fake"].reset(config=True)
    app = create_app(Settings.from_env(stack["env"]))
    return app.test_client()


def annotation(task_id, label, annotation_id, updated="2026-01-01T00:00:00Z", cancelled=False):
    return {
        "id": annotation_id,
        "task": task_id,
        "was_cancelled": cancelled,
        "updated_at": updated,
        "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
    }


def annotate(client, task_id, text, label, annotation_id, **kwargs):
    body = {
        "action": "ANNOTATION_CREATED",
        "annotation": annotation(task_id, label, annotation_id, **kwargs),
        "task": {"id": task_id, "data": {"text": text}},
        "project": {"id": 1},
    }
    return client.post("/webhook", json=body)


def predict(client, texts, project="1.1700000000", config=SENTIMENT_CONFIG, first_id=100):
    tasks = [
        {"id": first_id + i, "data": {"text": t}, "project": int(project.split(".")[0])} for i, t in enumerate(texts)
    ]
    return client.post(
        "/predict", json={"tasks": tasks, "project": project, "label_config": config, "params": {"context": None}}
    )


def labels_of(response):
    return [
        (r.get("result") or [{"value": {"choices": [None]}}])[0]["value"]["choices"]
        for r in response.get_json()["results"]
    ]


def test_health_reports_redis_workers_and_llm_without_secrets(client):
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "UP" and body["redis"] == "ok"
    assert body["workers"] >= 1 and body["llm"]["api_key_set"] is True
    assert "sk-test-fake" not in response.get_data(as_text=True)


def test_health_and_predict_say_503_when_redis_is_down():
    app = create_app(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}))
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503 and "unreachable" in health.get_json()["redis"]
    response = predict(client, ["Lisa is happy."])
    assert response.status_code == 503 and "Redis" in response.get_json()["error"]


def test_setup_returns_a_stable_version_per_project(client):
    first = client.post("/setup", json={"project": "1.1700000000", "schema": SENTIMENT_CONFIG})
    again = client.post("/setup", json={"project": "1.1700000000", "schema": SENTIMENT_CONFIG})
    other = client.post("/setup", json={"project": "2.1700000000", "schema": MULTI_CONFIG})
    assert first.status_code == 200 and first.get_json()["model_version"].startswith("fsp-")
    assert first.get_json() == again.get_json()
    assert other.get_json()["model_version"] != first.get_json()["model_version"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (
            {
                "project": "1.1",
                "schema": '<View><Image name="i" value="$img"/><RectangleLabels name="b" toName="i">'
                '<Label value="car"/></RectangleLabels></View>',
            },
            "RectangleLabels",
        ),
        ({"project": "1.1", "schema": SENTIMENT_CONFIG, "extra_params": {"mode": "magic"}}, "magic"),
        ({"project": "1.1", "schema": SENTIMENT_CONFIG, "extra_params": {"temperature": 1}}, "unknown option"),
        ({"project": "1.1", "schema": SENTIMENT_CONFIG, "extra_params": "{not json"}, "JSON object"),
        ({"schema": SENTIMENT_CONFIG}, "project id"),
    ],
)
def test_setup_explains_what_it_cannot_serve(client, body, fragment):
    response = client.post("/setup", json=body)
    assert response.status_code == 400 and fragment in response.get_json()["error"]


def test_predict_labels_each_task_in_order_with_score_and_version(client, stack):
    version = client.post("/setup", json={"project": "1.1700000000", "schema": SENTIMENT_CONFIG}).get_json()
    annotate(client, 1, "John is happy.", "positive", 11)
    annotate(client, 2, "Amy is angry.", "negative", 12)
    version = client.get("/versions?project=1").get_json()["model_version"]
    response = predict(client, ["Lisa is happy today.", "Bob is angry again.", "Kim is happy."])
    body = response.get_json()
    assert response.status_code == 200
    assert labels_of(response) == [["positive"], ["negative"], ["positive"]]
    assert all(r["model_version"] == version and 0 < r["score"] <= 1 for r in body["results"])
    prompt = json.dumps(stack["fake"].requests()[-1]["body"]["messages"])
    assert "John is happy." in prompt and "Amy is angry." in prompt


def test_predicting_the_same_tasks_again_costs_no_llm_call(client, stack):
    predict(client, ["Lisa is happy.", "Bob is angry."])
    calls = stack["fake"].stats()["requests"]
    response = predict(client, ["Lisa is happy.", "Bob is angry."], first_id=500)
    assert len(response.get_json()["results"]) == 2 and all("result" in r for r in response.get_json()["results"])
    assert stack["fake"].stats()["requests"] == calls


def test_a_task_that_cannot_be_labeled_keeps_the_counts_aligned(client, stack):
    stack["fake"].configure(rate_out_of_set=1.0)
    tasks = [{"id": 1, "data": {"text": "Lisa is happy."}}, {"id": 2, "data": {"other": "no text key"}}]
    response = client.post("/predict", json={"tasks": tasks, "project": "1.1", "label_config": SENTIMENT_CONFIG})
    results = response.get_json()["results"]
    assert response.status_code == 200 and len(results) == 2
    assert all("result" not in r for r in results)  # no wrong label, and nothing that blocks a later retry


def test_two_projects_on_one_backend_keep_their_own_labels(client):
    single = predict(client, ["Lisa is happy."], project="1.1")
    multi = predict(client, ["the match and the vote"], project="2.1", config=MULTI_CONFIG)
    assert labels_of(single)[0][0] in ("positive", "negative")
    assert set(labels_of(multi)[0]) <= {"sports", "politics", "science", "food"}


def test_the_config_registered_at_setup_serves_a_predict_without_one(client):
    client.post("/setup", json={"project": "3.1", "schema": SENTIMENT_CONFIG})
    response = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "Lisa is happy."}, "project": 3}]})
    assert response.status_code == 200 and labels_of(response)[0][0] in ("positive", "negative")
    unknown = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "x"}, "project": 99}]})
    assert unknown.status_code == 404 and "not set up" in unknown.get_json()["error"]


def test_annotation_events_change_the_demonstrations_and_the_version(client, stack):
    client.post("/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG})
    zero_shot = client.get("/versions?project=1").get_json()["model_version"]
    assert annotate(client, 5, "Zed is gloomy.", "negative", 50).status_code == 201
    after = client.get("/versions?project=1").get_json()["model_version"]
    assert after != zero_shot
    predict(client, ["Yan is gloomy."])
    assert "Zed is gloomy." in json.dumps(stack["fake"].requests()[-1]["body"]["messages"])
    deleted = client.post(
        "/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 50}], "project": {"id": 1}}
    )
    assert deleted.get_json()["changed"] == 1
    assert client.get("/versions?project=1").get_json()["model_version"] == zero_shot


def test_skipped_and_older_annotations_are_not_examples(client):
    client.post("/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG})
    assert annotate(client, 7, "Val is calm.", "positive", 70, cancelled=True).get_json()["changed"] == 0
    assert annotate(client, 8, "Ugo is fine.", "positive", 80, updated="2026-03-01").get_json()["changed"] == 1
    older = annotate(client, 8, "Ugo is fine.", "negative", 81, updated="2026-02-01")
    assert older.get_json()["changed"] == 0


def test_tasks_deleted_removes_their_demonstrations(client):
    client.post("/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG})
    annotate(client, 9, "Wes is glad.", "positive", 90)
    body = {"action": "TASKS_DELETED", "tasks": [{"id": 9}], "project": {"id": 1}}
    assert client.post("/webhook", json=body).get_json()["changed"] == 1


@pytest.mark.parametrize(
    "path, data",
    [
        ("/predict", "not json"),
        ("/predict", "[1, 2]"),
        ("/predict", '{"tasks": "x", "project": "1.1"}'),
        ("/predict", '{"tasks": [], "project": "1.1"}'),
        ("/predict", '{"tasks": [{"id": "a", "data": {}}]}'),
        ("/predict", '{"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "abc"}'),
        ("/predict", '{"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "1.1", "label_config": 5}'),
        ("/setup", "null"),
        ("/webhook", '{"project": {"id": 1}}'),
        ("/webhook", '{"action": "X"}'),
        ("/webhook", '{"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": {"task": 1}}'),
        ("/predict", "[" * 100000 + "]" * 100000),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_json_message(client, path, data):
    response = client.post(path, data=data, content_type="application/json")
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    assert isinstance(response.get_json()["error"], str)


def test_get_and_post_versions(client):
    client.post("/setup", json={"project": "4.1", "schema": SENTIMENT_CONFIG})
    get = client.get("/versions?project=4.1").get_json()
    post = client.post("/versions", json={"project": "4.1"}).get_json()
    assert get == post and len(get["versions"]) == 1
    assert client.get("/versions?project=77").get_json()["versions"] == []


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_every_endpoint_and_the_webhook_takes_a_secret_header(stack):
    env = {**stack["env"], "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "s3cret-pass", "WEBHOOK_SECRET": "hook-key"}
    client = create_app(Settings.from_env(env)).test_client()
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=basic("ls", "wrong")).status_code == 401
    assert client.get("/health", headers=basic("ls", "s3cret-pass")).status_code == 200
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    assert client.post("/webhook", json=event).status_code == 401
    assert client.post("/webhook", json=event, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    assert client.post("/webhook", json=event, headers={"X-Webhook-Secret": "hook-key"}).status_code == 201
    assert client.post("/webhook", json=event, headers=basic("ls", "s3cret-pass")).status_code == 201
    assert "s3cret-pass" not in client.get("/health", headers=basic("ls", "s3cret-pass")).get_data(as_text=True)


def test_status_shows_each_projects_demonstrations_failures_and_runs(client, stack):
    client.post("/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG})
    annotate(client, 5, "Zed is gloomy.", "negative", 50)
    stack["fake"].configure(rate_out_of_set=1.0)
    predict(client, ["Lisa is happy."])
    body = client.get("/status?project=1").get_json()
    assert "projects" in body, body
    project = body["projects"][0]
    assert project["project_id"] == 1 and project["demonstrations"] == {"live": 1, "active": 1}
    assert project["failed_tasks"] == 1, project
    assert project["failures"]["100"]["error"] == "out_of_set"
    assert project["model_version"].startswith("fsp-") and body["workers"] >= 1
    assert client.get("/status?project=abc").status_code == 400
