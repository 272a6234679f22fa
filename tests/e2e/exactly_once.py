"""Projects of AG News tasks in a real Label Studio, and the tally every queue test ends with: each task has
exactly one prediction of the current model_version, or is listed failed with its reason; none lost, none
duplicated."""

from __future__ import annotations

import json
from collections import Counter

import redis as redis_lib

from tests.conftest import EVAL_DATA

FIGURES: list[str] = []  # one line per tally, printed at the end of the pytest run (conftest.py)

CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="topic" toName="text"><Choice value="World"/><Choice value="Sports"/><Choice value="Business"/>
<Choice value="Sci/Tech"/></Choices></View>"""


def news(count: int, offset: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in (EVAL_DATA / "ag_news_test.jsonl").read_text().splitlines()]
    return rows[offset : offset + count]


def make_project(api, title: str, tasks: int, annotated: int) -> dict:
    rows = news(tasks)
    project = api.create_project(title, CONFIG)
    task_ids = api.import_tasks(project["id"], [{"text": r["text"]} for r in rows])
    for task_id, row in list(zip(task_ids, rows))[:annotated]:
        api.create_annotation(
            task_id,
            [{"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [row["label"]]}}],
        )
    # prelabel skips annotated tasks (they need no pre-label); "tasks" are the ones it must label
    return {"id": project["id"], "tasks": task_ids[annotated:], "all": task_ids}


def prediction_counts(api, project_id: int) -> tuple[Counter, set]:
    predictions = api.list_predictions(project_id=project_id)
    return Counter((p["task"], p["model_version"]) for p in predictions), {p["model_version"] for p in predictions}


def failures(redis_url: str, project_id: int) -> dict[int, dict]:
    """The project's failure list, as /status shows it: task -> {error, detail, ...}."""
    connection = redis_lib.Redis.from_url(redis_url)
    return {int(k): json.loads(v) for k, v in connection.hgetall(f"fsp:failures:{project_id}").items()}


def tally(api, project: dict, redis_url: str, version: str | None = None) -> dict:
    """completed / failed / lost / duplicated over the project's tasks, for `version` (else the only one)."""
    counts, versions = prediction_counts(api, project["id"])
    if version is None:
        assert len(versions) <= 1, versions
        version = next(iter(versions), "")
    listed = failures(redis_url, project["id"])
    return {
        "version": version,
        "completed": sum(1 for t in project["tasks"] if counts[(t, version)] == 1),
        "failed": sum(1 for t in project["tasks"] if counts[(t, version)] == 0 and listed.get(t, {}).get("detail")),
        "lost": [t for t in project["tasks"] if counts[(t, version)] == 0 and not listed.get(t, {}).get("detail")],
        "duplicated": [t for t in project["tasks"] if counts[(t, version)] > 1],
    }


def assert_exactly_once(api, project: dict, redis_url: str, version: str | None = None, label: str = "") -> dict:
    figures = tally(api, project, redis_url, version)
    line = (
        f"{label or project.get('title', '')}: {len(project['tasks'])} tasks: completed {figures['completed']}, "
        f"failed with a listed reason {figures['failed']}, lost {len(figures['lost'])}, "
        f"duplicated {len(figures['duplicated'])}"
    )
    FIGURES.append(line)
    print("\n" + line)
    assert not figures["duplicated"] and not figures["lost"], figures
    return figures
