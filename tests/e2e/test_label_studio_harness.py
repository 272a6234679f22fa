"""Smoke tests for the local Label Studio harness, and the JSON shapes Label Studio 1.23.2 returns.

Shapes verified against the running server by these tests (ids, times and counters vary):

Task, from `StudioAdmin.list_tasks` (GET /api/tasks/?project=P&fields=all, paged; the
answer is {"tasks": [...], "total", "total_annotations", "total_predictions"})
and `get_task` (GET /api/tasks/ID/) alike:
    {"id": 2, "project": 1, "inner_id": 2, "data": {"text": "..."}, "meta": {},
     "annotations": [<annotation>], "predictions": [<prediction>], "drafts": [],
     "annotators": [1], "total_annotations": 0, "cancelled_annotations": 0,
     "total_predictions": 1, "is_labeled": false, "overlap": 1, "completed_at": null,
     "annotations_ids": "", "predictions_model_versions": "manual", "updated_by": [{"user_id": 1}],
     "created_at": "...Z", "updated_at": "...Z", ...}
    Without fields=all the list leaves out "annotations" and "predictions".
    Importing {"text": ...} (flat) or {"data": {"text": ...}} gives the same task data.

Annotation (POST /api/tasks/ID/annotations/ and inside a task):
    {"id": 1, "task": 1, "project": 1, "result": [<region>], "was_cancelled": false,
     "ground_truth": false, "completed_by": 1, "updated_by": 1, "lead_time": null,
     "created_username": " admin@example.com, 1", "parent_prediction": null,
     "parent_annotation": null, "created_at": "...", "updated_at": "...", ...}

Prediction (POST /api/predictions/ {"task", "result", "score", "model_version"},
GET /api/predictions/?project=P or ?task=T, and inside a task):
    {"id": 1, "task": 2, "project": 1, "result": [<region>], "score": 0.5,
     "model_version": "manual", "model": null, "model_run": null, "mislabeling": 0.0,
     "cluster": null, "neighbors": null, "created_at": "...", "updated_at": "..."}

Region: {"from_name": "sentiment", "to_name": "text", "type": "choices",
         "value": {"choices": ["Negative"]}}

ML backend (POST /api/ml/ and GET /api/ml/?project=P, a list):
    {"id": 1, "project": 1, "url": "http://127.0.0.1:PORT", "state": "CO",
     "readable_state": "Connected", "is_interactive": true, "title": "default",
     "auth_method": "NONE" | "BASIC_AUTH", "basic_auth_user": "", "basic_auth_pass_is_set": false,
     "extra_params": {...} | null, "model_version": "<what /setup returned>", "timeout": 100.0,
     "auto_update": true, "error_message": null, "description": "", "created_at", "updated_at"}
    Basic auth is written as auth_method="BASIC_AUTH", basic_auth_user, basic_auth_pass
    (write-only). Creating it calls the backend's /health and /setup twice; listing
    backends and every "retrieve predictions" call them again. /setup gets {"project": "<id>.<created_ts>", "schema",
    "hostname": "http://localhost:PORT", "access_token": <creator's legacy token>, "extra_params"}.

Webhook (created automatically with the ML backend; GET /api/webhooks/?project=P):
    {"id": 1, "organization": 1, "project": 1, "url": "http://127.0.0.1:PORT/webhook",
     "send_payload": true, "send_for_all_actions": true, "headers": {}, "is_active": true,
     "actions": [], "created_at": "...", "updated_at": "..."}
    An admin adds a header with PATCH /api/webhooks/ID/ {"headers": {...}, "actions": [...]}
    (a PATCH without "actions" empties the action list). Those headers go with the
    ANNOTATION_* events; START_TRAINING (POST /api/ml/ID/train, which answers 200 with
    an empty body) is sent by the ML client instead: with the backend's basic auth, not
    with the webhook's headers.

Data-manager actions (POST /api/dm/actions/?id=ACTION&project=P {"selectedItems": ...})
answer {"processed_items": 2, "detail": "Retrieved 2 predictions"}; with no selectedItems
they apply to ALL tasks. Retrieve sends annotated tasks too, and skips tasks that already
hold a prediction with the backend's current model_version.
Webhook bodies: {"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED", "annotation", "task",
"project"}; {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2}], "project"}. Interactive
(POST /api/ml/ID/interactive-annotating) answers
{"data": {"result": [...], "score", "model_version"}} and stores no prediction.
"""

from __future__ import annotations

import httpx

from backend.devtools.local_studio import TOKEN, USERNAME
from tests.e2e.conftest import SENTIMENT_CONFIG as CONFIG
from tests.e2e.conftest import sentiment_choice as choice


def new_project(studio, title: str) -> tuple[int, list[int]]:
    project = studio.api.create_project(title, CONFIG)  # titles need at least 3 characters
    texts = ["great film", "dull plot", "loved it", "fell asleep", "fine acting"]
    return project["id"], studio.api.import_tasks(project["id"], [{"data": {"text": t}} for t in texts])


def test_a_fresh_server_knows_the_template_user_and_token(studio):
    assert studio.api.whoami()["email"] == USERNAME == studio.username
    assert studio.token == TOKEN
    wrong = httpx.get(f"{studio.url}/api/projects/", headers={"Authorization": "Token not-the-token"})
    assert wrong.status_code == 401


def test_one_of_five_tasks_is_annotated_and_another_shows_a_prediction(studio):
    project_id, task_ids = new_project(studio, "smoke")
    annotation = studio.api.create_annotation(task_ids[0], choice("Positive"))
    prediction = studio.api.create_prediction(task_ids[1], choice("Negative"), score=0.5, model_version="manual")

    tasks = {task["id"]: task for task in studio.api.list_tasks(project_id)}

    assert sorted(tasks) == sorted(task_ids)
    assert sum(len(task["annotations"]) for task in tasks.values()) == 1
    assert tasks[task_ids[0]]["annotations"][0]["id"] == annotation["id"]
    assert tasks[task_ids[0]]["annotations"][0]["result"] == choice("Positive")
    listed = tasks[task_ids[1]]["predictions"]
    assert [(p["id"], p["score"], p["model_version"]) for p in listed] == [(prediction["id"], 0.5, "manual")]
    assert studio.api.get_task(task_ids[1])["predictions"][0]["result"] == choice("Negative")
    assert [p["id"] for p in studio.api.list_predictions(task_id=task_ids[1])] == [prediction["id"]]

    studio.api.delete_annotation(annotation["id"])
    assert studio.api.get_task(task_ids[0])["annotations"] == []


def test_a_connected_backend_predicts_and_gets_webhooks_with_the_admins_header(studio, stub_backend):
    project_id, task_ids = new_project(studio, "backend")
    ml = studio.api.connect_ml(project_id, stub_backend.url, extra={"k": "v"})
    assert (ml["state"], ml["model_version"], ml["extra_params"]) == ("CO", "stub-v1", {"k": "v"})
    setup = stub_backend.wait_for("/setup")[0]["body"]
    assert (setup["access_token"], setup["extra_params"]) == (TOKEN, {"k": "v"})
    assert [backend["id"] for backend in studio.api.ml_backends(project_id)] == [ml["id"]]

    [webhook] = studio.api.webhooks(project_id)
    assert (webhook["url"], webhook["headers"]) == (f"{stub_backend.url}/webhook", {})
    studio.api.update_webhook(webhook["id"], {"Authorization": "Bearer admin-set"})
    studio.api.create_annotation(task_ids[0], choice("Negative"))
    [event] = stub_backend.wait_for("/webhook")
    assert event["body"]["action"] == "ANNOTATION_CREATED"
    assert event["headers"]["Authorization"] == "Bearer admin-set"

    assert studio.api.retrieve_predictions(project_id, task_ids[1:3])["processed_items"] == 2
    predicted = {p["task"]: p["model_version"] for p in studio.api.list_predictions(project_id=project_id)}
    assert predicted == {task_ids[1]: "stub-v1", task_ids[2]: "stub-v1"}
    answer = studio.api.interactive(ml["id"], task_ids[3], {"result": []})
    assert answer["data"]["result"] == [stub_backend.region] and "errors" not in answer
