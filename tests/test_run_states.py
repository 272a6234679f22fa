"""A run's per-task states on a real Redis: whatever order jobs, retries, write-backs and failure callbacks
report in, each task is counted once and a write is never undone (property test)."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backend.pipeline.runs import mark, run_status, unsettled

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["label", "write", "lost"]),
        st.integers(1, 6),
        st.sampled_from(["labeled", "written", "failed", "withheld"]),
    ),
    max_size=40,
)


def model(events: list) -> dict[int, str]:
    """The rules, written plainly: what each task's state must be after the events."""
    states: dict[int, str] = {}
    for source, task, new in events:
        old = states.get(task)
        if source == "label":
            take = new in ("labeled", "failed", "withheld") and old in (None, "failed", "withheld")
        elif source == "write":
            take = new in ("written", "failed") and old != "written" and not (new == "failed" and old == "failed")
        else:
            take = new == "failed" and old is None
        if take:
            states[task] = new
    return states


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_counts_follow_the_states_and_a_write_is_final(redis_conn, events):
    run = "prop"
    redis_conn.delete(f"fsp:run:{run}", f"fsp:run:{run}:tasks")
    redis_conn.hset(
        f"fsp:run:{run}",
        mapping={
            "run_id": run,
            "project_id": 1,
            "total": 6,
            "started": time.time(),
            "cached": 0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
    )
    for source, task, state in events:
        # Each source reports only the states it can produce (a job: labeled/failed/withheld; the write-back:
        # written/failed; a failure callback: failed); other combinations are skipped, as in the model.
        allowed = {"label": ("labeled", "failed", "withheld"), "write": ("written", "failed"), "lost": ("failed",)}
        if state in allowed[source]:
            mark(redis_conn, run, {task: state}, source)
    expected = model(events)
    status = run_status(redis_conn, run)
    count = {s: sum(1 for v in expected.values() if v == s) for s in ("labeled", "written", "failed", "withheld")}
    assert (status["done"], status["written_back"], status["failed"], status["withheld"]) == (
        count["labeled"] + count["written"],
        count["written"],
        count["failed"],
        count["withheld"],
    )
    assert status["finished"] == count["written"] + count["failed"] + count["withheld"]
    assert set(unsettled(redis_conn, run, list(range(1, 7)))) == set(range(1, 7)) - set(expected)
    written = {task for source, task, state in events if source == "write" and state == "written"}
    assert all(expected[t] == "written" for t in written)  # nothing undoes a write
