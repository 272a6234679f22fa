"""backend.studio.client against a real Label Studio 1.23.2: paging, bulk predictions, errors that say what to fix.

What these tests (and reading the SDK 2.1.2 and server 1.23.2 sources) established:

Tokens. label-studio-sdk 2.x decides from the key itself: a string that does not decode
as a JWT is a legacy token and goes out as `Authorization: Token <key>`; Label Studio
1.23.2 accepts that only when the organisation has legacy tokens enabled (started with
--enable-legacy-api-token when the organisation was created). A JWT is taken for a
personal access token (a refresh token, `token_type: refresh`, ~100 years `exp`): the SDK
trades it at POST /api/token/refresh/ for a short-lived access token, sends
`Authorization: Bearer <access>`, and refreshes it when it expires. The PAT itself is
refused both as `Bearer` and as `Token` (401). An expired JWT, or one without `exp`, makes
the LabelStudio constructor raise ApiError(401) before any request; a forged one fails at
the refresh (401 "Token is invalid"). Studio turns all of these into StudioAuthError.
A str subclass like settings.Secret must be unwrapped: the SDK formats the key into the header.

Timestamps. Annotation and prediction `created_at`/`updated_at` come back as ISO 8601 UTC
strings with microseconds and a `Z` ("2026-11-28T23:58:54.432217Z"), in task lists and in
GET /api/tasks/ID alike, so they sort as strings. SDK models turn top-level task and
project datetimes into `datetime`; Studio dumps them back to the same strings.

GET /api/tasks/?project=P. Default (`fields` absent or "task_only"): id, data, meta,
counters (total_annotations, cancelled_annotations, total_predictions), annotations_ids,
predictions_model_versions, annotations_results / predictions_results (display strings cut
at 500 characters), drafts, annotators, timestamps: no annotations and no predictions.
`fields=all` adds annotations (full, with result and completed_by as a user object) and
predictions (full) and evaluates every data-manager column: about 2x slower (10,000 tasks:
7.5 s default, 14.9 s all). The answer is {"tasks", "total", "total_annotations",
"total_predictions"}; a page past the end is HTTP 404 "Invalid page." (the SDK pager stops
on that 404, so it always makes one request more than needed). `include=a,b` (drf-flex-fields)
keeps only those keys, and applies the same list to nested annotations and predictions.
The SDK's tasks.list() asks for fields=all unless told otherwise.

Annotated tasks only. `only_annotated=true`, which the SDK offers, is ignored by the 1.23.2
community server (all tasks come back). What works is a data-manager filter in `query`:
total_annotations > 0 OR cancelled_annotations > 0 (counters Label Studio keeps on each
task): 250 annotated tasks out of 10,000 in 0.21 s with include=id,data,annotations.
A cancelled (skipped) annotation counts only in cancelled_annotations, so the OR is needed
to see tasks whose only annotation was skipped.

Predictions. GET /api/predictions/?project=P is unpaginated and filters only by task and
project; it is the cheapest whole-project read (15,000 predictions: 0.75 s raw JSON, 2.3 s
through the SDK's models). The data-manager filter predictions_model_versions "contains"
is a case-insensitive substring match (SQL LIKE on SQLite): "V1" finds "v1", so it can only
narrow candidates. POST /api/projects/P/import/predictions exists, answers {"created": N},
and in 1.23.2 (feature flag fflag_fix_back_4620... off) recounts EVERY task of the project on
each call: about 4 s per call in a 10,000-task project whatever the chunk size (1 or 5,000),
against 0.06 s for one POST /api/predictions. It silently drops predictions whose labels do
not fit the labeling config (created < sent) and rejects a whole call (400) for a task id
outside the project. Starting Label Studio with the environment variable
fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true switches to a
path that recounts only the imported tasks (100 predictions: 0.09 s instead of 4.3 s; 2,000:
0.8 s instead of 4.6 s) but no longer checks labels against the config.
"""

from __future__ import annotations

import logging
import time

import httpx
import jwt
import pytest

from backend.labeling.examples import examples_from_tasks
from backend.labeling.parser import parse_spec
from backend.processes import free_port
from backend.settings import Secret
from backend.studio.client import Studio, StudioAuthError, StudioError, studio_from
from tests.e2e.conftest import SENTIMENT_CONFIG as CONFIG
from tests.e2e.conftest import sentiment_choice as choice


def new_project(studio, title: str, n_tasks: int) -> tuple[int, list[int]]:
    project = studio.api.create_project(title, CONFIG)
    return project["id"], studio.api.import_tasks(project["id"], [{"text": f"review {i}"} for i in range(n_tasks)])


@pytest.fixture(scope="module")
def client(studio):
    with Studio(studio.url, studio.token) as client:
        yield client


@pytest.fixture
def requests_seen(client):
    """Every HTTP request the client sends during the test, as "METHOD path"."""
    seen: list[str] = []
    hook = lambda request: seen.append(f"{request.method} {request.url.path}")  # noqa: E731
    client._http.event_hooks["request"].append(hook)
    yield seen
    client._http.event_hooks["request"].remove(hook)


@pytest.fixture(scope="module")
def reviewed(studio):
    """250 tasks; 130 annotated: even ones Positive (task 0 also skipped once), 5 odd ones Negative,
    task 2 only skipped (a cancelled annotation and nothing else)."""
    project_id, ids = new_project(studio, "annotated paging", 250)
    labels = {i: "Positive" for i in range(0, 250, 2)} | {i: "Negative" for i in (1, 3, 5, 7, 9)}
    for i, label in labels.items():
        studio.api.create_annotation(ids[i], choice(label), was_cancelled=(i == 2))
    studio.api.create_annotation(ids[0], choice("Negative"), was_cancelled=True)
    return project_id, ids, labels


def test_annotated_tasks_pages_through_exactly_the_annotated_tasks(client, reviewed, requests_seen):
    project_id, ids, labels = reviewed

    started = time.perf_counter()
    tasks = list(client.annotated_tasks(project_id, page_size=50))
    print(f"\nannotated_tasks: {len(tasks)} of 250 tasks, page_size 50: {time.perf_counter() - started:.2f} s")

    assert [t["id"] for t in tasks] == sorted(ids[i] for i in labels)  # ordered by id, each once
    assert requests_seen == ["GET /api/tasks/"] * 3  # 130 tasks in pages of 50, no extra request
    by_id = {t["id"]: t for t in tasks}
    assert by_id[ids[7]]["data"] == {"text": "review 7"}
    assert [a["result"] for a in by_id[ids[7]]["annotations"]] == [choice("Negative")]
    first = sorted(by_id[ids[0]]["annotations"], key=lambda a: a["id"])
    assert [(a["result"], a["was_cancelled"]) for a in first] == [
        (choice("Positive"), False),
        (choice("Negative"), True),
    ]
    assert [a["was_cancelled"] for a in by_id[ids[2]]["annotations"]] == [True]
    assert set(first[0]) == {
        "id",
        "result",
        "was_cancelled",
        "ground_truth",
        "created_at",
        "updated_at",
        "parent_prediction",
    }  # which prediction the annotator started from (live quality)
    assert first[0]["created_at"].endswith("Z") and first[0]["created_at"] < first[1]["created_at"]


def test_annotated_tasks_become_demonstrations(client, reviewed):
    project_id, ids, labels = reviewed

    examples, skipped = examples_from_tasks(client.annotated_tasks(project_id), parse_spec(CONFIG))

    assert len(examples) == 129 and sum(skipped.values()) == 1  # task 2 was only skipped
    assert {(e.ref, e.labels) for e in examples} == {(str(ids[i]), (label,)) for i, label in labels.items() if i != 2}


def test_tasks_lists_every_task_cheaply(client, reviewed, requests_seen):
    project_id, ids, _ = reviewed

    tasks = list(client.tasks(project_id, page_size=100))
    only_ids = list(client.tasks(project_id, page_size=1000, only_ids=True))

    assert [t["id"] for t in tasks] == ids
    assert tasks[3]["data"] == {"text": "review 3"} and tasks[3]["project"] == project_id
    assert (tasks[0]["total_annotations"], tasks[0]["cancelled_annotations"]) == (1, 1)
    assert "annotations" not in tasks[0] and "predictions" not in tasks[0]
    assert only_ids == [{"id": i} for i in ids]
    assert len(requests_seen) == 3 + 1


def test_task_has_annotations_and_predictions_with_their_model_version(client, reviewed):
    project_id, ids, _ = reviewed
    assert (
        client.create_predictions(
            project_id,
            [
                {
                    "task": ids[9],
                    "result": choice("Positive"),
                    "score": 0.25,
                    "model_version": "fewshot-task-test",
                }
            ],
        )
        == 1
    )

    task = client.task(ids[9])

    assert (task["id"], task["project"], task["data"]) == (ids[9], project_id, {"text": "review 9"})
    assert [a["result"] for a in task["annotations"]] == [choice("Negative")]
    assert [(p["result"], p["score"], p["model_version"]) for p in task["predictions"]] == [
        (choice("Positive"), 0.25, "fewshot-task-test")
    ]


def test_project_gives_title_and_label_config(client, reviewed):
    project = client.project(reviewed[0])
    assert (project["id"], project["title"], project["label_config"]) == (
        reviewed[0],
        "annotated paging",
        CONFIG,
    )
    assert project["created_at"].endswith("Z")


@pytest.fixture(scope="module")
def predicted(studio, client):
    """650 tasks, the first 600 predicted by version fewshot-a in 3 calls of 250."""
    project_id, ids = new_project(studio, "bulk predictions", 650)
    predictions = [
        {
            "task": t,
            "result": choice("Positive" if i % 2 else "Negative"),
            "score": i / 1000,
            "model_version": "fewshot-a",
        }
        for i, t in enumerate(ids[:600])
    ]
    started = time.perf_counter()
    created = client.create_predictions(project_id, predictions, chunk_size=250)
    print(f"\ncreate_predictions: 600 in chunks of 250: {time.perf_counter() - started:.2f} s")
    return project_id, ids, created


def test_create_predictions_writes_in_chunks(client, studio, predicted):
    project_id, ids, created = predicted

    assert created == 600
    assert len(studio.api.list_predictions(project_id=project_id)) == 600
    shown = studio.api.get_task(ids[7])["predictions"]
    assert [(p["result"], p["score"], p["model_version"]) for p in shown] == [(choice("Positive"), 0.007, "fewshot-a")]
    assert studio.api.get_task(ids[600])["predictions"] == []


def test_create_predictions_makes_one_call_per_chunk(client, studio, requests_seen):
    project_id, ids = new_project(studio, "chunk count", 5)
    predictions = [{"task": t, "result": choice("Positive"), "model_version": "x"} for t in ids]

    assert client.create_predictions(project_id, predictions, chunk_size=2) == 5
    assert client.create_predictions(project_id, []) == 0
    assert requests_seen == [f"POST /api/projects/{project_id}/import/predictions"] * 3


def test_predicted_task_ids_finds_exactly_that_version(client, predicted, requests_seen):
    project_id, ids, _ = predicted

    started = time.perf_counter()
    whole = client.predicted_task_ids(project_id, "fewshot-a")
    print(f"\npredicted_task_ids, whole project: {len(whole)} of 650 in {time.perf_counter() - started:.3f} s")
    started = time.perf_counter()
    selected = client.predicted_task_ids(project_id, "fewshot-a", ids)
    print(f"predicted_task_ids: {len(selected)} of 650 given task ids: {time.perf_counter() - started:.3f} s")

    assert whole == selected == set(ids[:600])
    assert requests_seen == [
        "GET /api/predictions/",
        "GET /api/tasks/",
        "GET /api/tasks/",
    ]  # 650 ids: 2 queries
    assert client.predicted_task_ids(project_id, "fewshot-a", ids[590:610]) == set(ids[590:600])
    assert client.predicted_task_ids(project_id, "fewshot-a", []) == set()


@pytest.mark.parametrize("other", ["fewshot-b", "FEWSHOT-A", "fewshot-", "fewshot-a2", "%"])
def test_predicted_task_ids_ignores_other_versions(client, predicted, other):
    # "FEWSHOT-A" and "fewshot-" match Label Studio's own (case-insensitive, substring) filter.
    project_id, ids, _ = predicted
    assert client.predicted_task_ids(project_id, other) == set()
    assert client.predicted_task_ids(project_id, other, ids[:100]) == set()


def test_predictions_that_do_not_fit_the_config_are_counted_out(client, studio, caplog):
    project_id, ids = new_project(studio, "bad labels", 3)
    predictions = [
        {"task": t, "result": choice(label), "model_version": "v"}
        for t, label in zip(ids, ["Positive", "Nope", "Negative"])
    ]

    with caplog.at_level(logging.WARNING, logger="backend.studio.client"):
        assert client.create_predictions(project_id, predictions) == 2
    assert "created 2 of 3" in caplog.text


def test_a_task_of_another_project_fails_the_call_with_a_reason(client, studio, predicted):
    project_id, _ = new_project(studio, "wrong task", 1)
    with pytest.raises(StudioError) as caught:
        client.create_predictions(project_id, [{"task": predicted[1][0], "result": choice("Positive")}])
    assert caught.value.status == 400 and 'invalid "task" field' in str(caught.value)


def test_a_missing_project_says_not_found(client):
    with pytest.raises(StudioError, match="reading project 987654: not found .* check the id") as caught:
        client.project(987654)
    assert caught.value.status == 404


def test_a_wrong_token_raises_auth_error_without_the_token(studio):
    token = "wrong-token-0123456789abcdef"
    with Studio(studio.url, token) as client:
        with pytest.raises(StudioAuthError) as caught:
            client.project(1)
    assert caught.value.status == 401
    assert "LABEL_STUDIO_API_KEY" in str(caught.value) and "legacy token" in str(caught.value)
    assert token not in str(caught.value) and token not in repr(caught.value) and token not in repr(client)


def test_forged_and_expired_personal_tokens_raise_auth_errors(studio):
    forged = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600, "user_id": 1}, "x" * 32)
    expired = jwt.encode({"token_type": "refresh", "exp": int(time.time()) - 60, "user_id": 1}, "x" * 32)

    with Studio(studio.url, forged) as client, pytest.raises(StudioAuthError, match="HTTP 401") as caught:
        client.project(1)
    assert forged not in str(caught.value)
    with pytest.raises(StudioAuthError, match="expired") as caught:
        Studio(studio.url, expired)
    assert expired not in str(caught.value)


def test_a_personal_access_token_works(studio, reviewed):
    answer = httpx.post(f"{studio.url}/api/token/", headers={"Authorization": f"Token {studio.token}"}, timeout=30)
    if answer.status_code == 409:
        pytest.skip("the admin already has a personal access token (one per user), made by another test")
    assert answer.status_code == 201, answer.text

    with Studio(studio.url, answer.json()["token"]) as client:
        assert client.project(reviewed[0])["title"] == "annotated paging"


def test_a_secret_token_from_settings_is_sent_as_itself(studio, reviewed):
    with Studio(studio.url, Secret(studio.token)) as client:
        assert client.project(reviewed[0])["id"] == reviewed[0]


def test_an_unreachable_url_says_so():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    with Studio(url, "some-token-123456") as client, pytest.raises(StudioError) as caught:
        client.project(1)
    print(f"\nunreachable: failed after {time.perf_counter() - started:.1f} s (the SDK retries connects twice)")
    assert caught.value.status is None and not isinstance(caught.value, StudioAuthError)
    assert f"cannot reach Label Studio at {url}" in str(caught.value) and "LABEL_STUDIO_URL" in str(caught.value)
    assert "some-token-123456" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "token", "hint"),
    [
        (None, "t", "set LABEL_STUDIO_URL"),
        ("http://x", "", "set LABEL_STUDIO_API_KEY"),
        ("localhost:8080", "t", "http://"),
    ],
)
def test_studio_from_says_which_setting_is_missing(url, token, hint):
    with pytest.raises(StudioError, match=hint):
        studio_from(url, token)
