"""Chaos against the real parts: a real Label Studio (behind a fault-injecting proxy where the test needs one),
a private redis-server, real rq worker processes killed with SIGKILL, the fake LLM over HTTP.

Each test prints completed / failed / lost / duplicated; lost and duplicated must be 0: every task ends with
exactly one prediction of the current model_version, or is listed failed with its reason (GET /status).
Runs are kept small and the timeouts short (LABEL_STUDIO_TIMEOUT, JOB_TIMEOUT, WORKER_MAINTENANCE) so the
whole file takes a few minutes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from itertools import cycle

import pytest
import redis as redis_lib

from backend.commands.prelabel import prelabel
from backend.pipeline import jobs, outbox
from backend.processes import start_backend
from backend.studio.client import StudioError
from tests.conftest import REPO, stack_env
from tests.e2e.exactly_once import assert_exactly_once, make_project, prediction_counts
from tests.e2e.studio_proxy import StudioProxy

STUDIO_TIMEOUT = 4  # s: claims last 4 x this (16 s)
CHAOS_ENV = {"LABEL_STUDIO_TIMEOUT": STUDIO_TIMEOUT, "JOB_TIMEOUT": 10, "JOB_CHUNK_SIZE": 4, "WORKER_WAIT": 120}
BACKEND_VARS = (
    "REDIS_URL",
    "QUEUE_NAME",
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_API_KEY",
    "LABEL_STUDIO_TIMEOUT",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "LLM_MODEL",
    "WRITE_BACK_TIMEOUT",
)


@pytest.fixture
def proxy(studio):
    with StudioProxy(studio.url) as server:
        yield server


@pytest.fixture
def here(monkeypatch):
    """Run the workers' job functions in this process with a given environment."""

    def use(env: dict) -> None:
        for name in BACKEND_VARS:
            if name in env:
                monkeypatch.setenv(name, str(env[name]))
        jobs._state.cache_clear()

    yield use
    jobs._state.cache_clear()


def queued_rows(project: dict, version: str, tasks: list[int] | None = None) -> list[dict]:
    """Write-back rows as a labeling job queues them (valid predictions for CONFIG)."""
    labels = cycle(["World", "Sports", "Business", "Sci/Tech"])
    return [
        {
            "task": t,
            "result": [
                {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [next(labels)]}}
            ],
            "score": 0.9,
            "model_version": version,
            "run": "",
        }
        for t in (tasks or project["tasks"])
    ]


def flush_until_empty(connection, project_id: int, timeout: float = 90) -> None:
    """Flush as the next flush jobs would, until the outbox is empty (claims of a dead flusher expire first)."""
    deadline = time.monotonic() + timeout
    while outbox.size(connection, project_id) and time.monotonic() < deadline:
        jobs.flush_outbox(project_id)
        time.sleep(1)


def run_prelabel(stack: dict, project_id: int) -> dict:
    """prelabel in a thread (a test can act meanwhile); result["code"] once it returned."""
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(code=prelabel(stack["settings"], project_id, True)), daemon=True
    )
    thread.start()
    result["thread"] = thread
    return result


def connect(api, project_id: int, url: str, attempts: int = 3) -> None:
    """Connect the backend as an admin would: again if Label Studio gave up on a slow first /setup (3 s)."""
    for attempt in range(attempts):
        try:
            api.connect_ml(project_id, url)
            return
        except StudioError as exc:
            if "Read timed out" not in str(exc) or attempt == attempts - 1:
                raise


def wait_dead(proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not proc.alive(), f"{proc.name} was not killed by its chaos hook:\n{proc.tail()}"


# ---- the defects, reproduced step by step -------------------------------------------------------------------


def test_a_flusher_killed_holding_its_claims_loses_no_row(studio, redis_server, here, logs_dir):
    """Issue 13, defect 1: 8 queued rows, the first flush SIGKILLed after taking its claims; the next flush
    used to win nothing, write nothing and trim the rows anyway."""
    project = make_project(studio.api, "Killed flusher", 10, 2)
    env = stack_env(
        redis_server["url"],
        "http://127.0.0.1:9/v1",
        LABEL_STUDIO_URL=studio.url,
        LABEL_STUDIO_API_KEY=studio.token,
        **CHAOS_ENV,
    )
    connection = redis_lib.Redis.from_url(redis_server["url"])
    outbox.push(connection, project["id"], queued_rows(project, "fsp-killed0001"))
    code = (
        "import sys, tests.chaos_worker as chaos; chaos.install('kill:after-claim'); "
        f"from backend.pipeline.jobs import flush_outbox; flush_outbox({project['id']})"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "FSP_CHAOS": "kill:after-claim"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    here(env)
    jobs.flush_outbox(project["id"])  # the next flush: the dead flusher's claims still hold
    assert outbox.size(connection, project["id"]) == len(project["tasks"])  # nothing dropped unwritten
    flush_until_empty(connection, project["id"])
    assert_exactly_once(studio.api, project, redis_server["url"], "fsp-killed0001", "killed after the claim")


def test_two_flushers_with_an_expired_lock_drop_nothing(studio, redis_server, proxy, here):
    """Issue 13, defect 2: flusher A is inside Label Studio's bulk write when flusher B starts (A's lock has
    expired), B finds A's rows claimed, new rows arrive, A finishes: each used to trim a count of rows, so
    the new rows went unwritten."""
    project = make_project(studio.api, "Two flushers", 12, 2)
    first, later = project["tasks"][:5], project["tasks"][5:]
    env = stack_env(
        redis_server["url"],
        "http://127.0.0.1:9/v1",
        LABEL_STUDIO_URL=proxy.url,
        LABEL_STUDIO_API_KEY=studio.token,
        LABEL_STUDIO_TIMEOUT=30,
    )
    here(env)
    connection = redis_lib.Redis.from_url(redis_server["url"])
    outbox.push(connection, project["id"], queued_rows(project, "fsp-twoflush01", first))
    hold = proxy.add("hold")
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            jobs.flush_outbox(project["id"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=flusher)
    a.start()
    assert proxy.wait_for(1, 30), "flusher A never reached Label Studio's bulk write"
    connection.delete(*connection.keys(f"fsp:outbox-lock:{project['id']}") or ["-"])  # A's lock ran out
    b = threading.Thread(target=flusher)
    b.start()
    b.join(60)
    outbox.push(connection, project["id"], queued_rows(project, "fsp-twoflush01", later))
    hold.released.set()
    a.join(60)
    flush_until_empty(connection, project["id"])
    assert_exactly_once(studio.api, project, redis_server["url"], "fsp-twoflush01", "two flushers")
    assert not errors, errors  # e.g. LockNotOwnedError from a lock that expired under its flusher


def test_a_job_that_raises_every_time_ends_the_run_with_its_tasks_listed(studio, make_stack, redis_server, capsys):
    """Issue 13, defect 3: a labeling job that fails for good used to leave its tasks uncounted, and prelabel
    followed the run forever. Now the run ends, prelabel exits 1 and lists every task with its reason."""
    stack = make_stack(workers=1, chaos="raise:label", **CHAOS_ENV)
    project = make_project(studio.api, "Raises", 10, 2)
    run = run_prelabel(stack, project["id"])
    run["thread"].join(240)  # 4 attempts (retries 2, 10 and 30 s apart)
    assert not run["thread"].is_alive(), "prelabel still follows a run whose every job failed for good"
    assert run["code"] == 1
    figures = assert_exactly_once(studio.api, project, redis_server["url"], "none-written", "a job that raises")
    assert figures["failed"] == len(project["tasks"])
    err = capsys.readouterr().err
    assert f"{len(project['tasks'])} tasks without a prediction: job_failed {len(project['tasks'])}" in err
    assert "chaos: this labeling job raises every time" in err


# ---- chaos through the workers -----------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["kill:after-claim", "kill:during-write", "kill:after-write"])
def test_a_worker_killed_at_each_step_of_a_flush_loses_and_duplicates_nothing(
    studio, make_stack, redis_server, proxy, point, capsys
):
    """One chaos worker labels a project and dies at `point` of its flush; a worker started after takes over."""
    if point == "kill:during-write":
        proxy.add("late_answer", seconds=3)  # the write is at Label Studio while the worker dies
    stack = make_stack(workers=1, chaos=point, studio_url=proxy.url, **CHAOS_ENV)
    project = make_project(studio.api, f"Chaos {point}", 26, 2)
    run = run_prelabel(stack, project["id"])
    wait_dead(stack["workers"][0])
    stack["add_workers"](1)
    run["thread"].join(240)
    assert not run["thread"].is_alive() and run["code"] == 0
    assert_exactly_once(studio.api, project, redis_server["url"], label=f"worker SIGKILLed at {point}")
    assert "waiting: " in capsys.readouterr().err  # it said what it waited for while the claims ran out


@pytest.mark.parametrize("fault", ["error_before", "error_after", "late_answer", "late_apply"])
def test_label_studio_failing_or_timing_out_during_write_back(studio, make_stack, redis_server, proxy, fault):
    """The bulk write answers 500 before or after applying, answers too late, or applies too late."""
    proxy.add(fault, seconds=STUDIO_TIMEOUT + 1.5)
    stack = make_stack(workers=1, studio_url=proxy.url, **CHAOS_ENV)
    project = make_project(studio.api, f"Studio {fault}", 10, 2)
    assert prelabel(stack["settings"], project["id"], True) == 0
    assert [c["fault"] for c in proxy.seen() if c["fault"]] == [fault]
    assert_exactly_once(studio.api, project, redis_server["url"], label=f"Label Studio write-back: {fault}")


def test_label_studio_failing_past_the_write_back_timeout_lists_the_tasks(studio, make_stack, redis_server, proxy):
    """Label Studio refuses every write: after WRITE_BACK_TIMEOUT the tasks are listed failed; the run ends."""
    proxy.add("error_before", times=10_000)
    stack = make_stack(workers=1, studio_url=proxy.url, WRITE_BACK_TIMEOUT=8, **CHAOS_ENV)
    project = make_project(studio.api, "Studio down", 10, 2)
    assert prelabel(stack["settings"], project["id"], True) == 1
    figures = assert_exactly_once(studio.api, project, redis_server["url"], "none-written", "Label Studio down")
    assert figures["failed"] == len(project["tasks"])


def test_a_predict_answered_in_time_takes_claims_so_a_running_prelabel_writes_no_second(
    studio, make_stack, redis_server, proxy, logs_dir
):
    """Issue 13, defect 8: while a prelabel's write-back is at Label Studio, "Retrieve predictions" asks
    /predict for the same tasks; answered from the cache within its deadline, it used to take no claims,
    so Label Studio stored both."""
    # SETUP_WAIT short: Label Studio gives /setup 3 s, and a loaded machine needs most of them for the rest.
    stack = make_stack(workers=1, studio_url=proxy.url, SETUP_WAIT=0.5, **CHAOS_ENV)
    backend, url = start_backend(logs_dir, stack["env"], workers=1)
    try:
        project = make_project(studio.api, "Predict and prelabel", 10, 2)
        connect(studio.api, project["id"], url)
        hold = proxy.add("hold_before")  # the write-back checked Label Studio; its write waits here
        run = run_prelabel(stack, project["id"])
        assert proxy.wait_for(1, 60), "the write-back never reached Label Studio"
        studio.api.retrieve_predictions(project["id"], project["tasks"])  # all cached: answered at once
        hold.released.set()
        run["thread"].join(120)
        assert run["code"] == 0
        counts, _ = prediction_counts(studio.api, project["id"])
        assert_exactly_once(studio.api, project, redis_server["url"], label="/predict during a write-back")
        assert sum(counts.values()) == len(project["tasks"])
    finally:
        backend.stop()


def test_prelabel_without_any_worker_stops_and_says_so(studio, make_stack, capsys):
    stack = make_stack(workers=0, WORKER_WAIT=3)
    project = make_project(studio.api, "No worker", 6, 2)
    started = time.monotonic()
    assert prelabel(stack["settings"], project["id"], True) == 1
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "no worker listens on queue 'fewshot-test' yet" in err
    assert "no worker has listened on queue 'fewshot-test' for 3 s (WORKER_WAIT)" in err
    assert "not finished: 4 tasks wait for a worker; the run stays queued" in err
