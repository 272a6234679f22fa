"""One prompt per task: the model call the web process built for the cache lookup is the one a worker sends."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st
from rq import Queue

from backend.model.labeler import PreparedCall
from backend.pipeline import dispatch
from backend.pipeline.projects import Contexts, register
from backend.processes import start_workers, stop_all
from backend.settings import Settings
from tests.conftest import SENTIMENT_CONFIG, clean_redis, stack_env, wait_for_workers

MARKER = "prepared-by-the-web-process"

messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=40)}),
    min_size=1,
    max_size=4,
)


@given(messages, st.booleans(), st.integers(0, 500), st.integers(0, 20), st.lists(st.text(max_size=8), max_size=5))
def test_a_prepared_call_survives_its_trip_through_redis(fitted, echo, truncated, dropped, refs):
    body = {"model": "m", "prompt": "p"} if echo else {"model": "m", "messages": copy.deepcopy(fitted)}
    call = PreparedCall(body, "key", "fsp-1", fitted, truncated, dropped, tuple(refs))
    again = PreparedCall.from_json(call.to_json())
    assert again == call
    assert ("messages" in call.to_json()) == echo  # sent once when the body carries them


def test_a_worker_sends_the_call_the_web_process_built_and_rebuilds_one_of_another_version(
    fake_llm, redis_url, redis_conn, logs_dir
):
    clean_redis(redis_url)
    env = stack_env(redis_url, fake_llm.url)
    settings = Settings.from_env(env)
    register(redis_conn, 7, SENTIMENT_CONFIG)
    labeler = Contexts(settings, redis_conn).get(7).labeler
    tasks = {1: {"text": "Lisa is happy."}, 2: {"text": "Bob is angry."}}
    calls = {}
    for task_id, data in tasks.items():
        call = labeler.prepare(data["text"])
        body = copy.deepcopy(call.body)
        body["messages"].insert(0, {"role": "system", "content": f"{MARKER} {task_id}"})
        version = call.model_version if task_id == 1 else "fsp-another-version"
        calls[task_id] = PreparedCall(body, call.cache_key, version, body["messages"]).to_json()
    fanout = dispatch.Fanout(7, model_version=labeler.model_version)
    workers = start_workers(1, logs_dir, env, prefix="prepared-worker")
    try:
        wait_for_workers(redis_url, 1)
        dispatch.submit(redis_conn, Queue(settings.queue_name, connection=redis_conn), fanout, tasks, 8, calls=calls)
        outcomes, abandoned = dispatch.gather(redis_conn, fanout.request_id, len(tasks), deadline=_in(60))
    finally:
        stop_all(workers)
    assert not abandoned and all(outcomes[t].get("result") for t in tasks), outcomes
    sent = [r["body"] for r in fake_llm.requests() if r["path"].endswith("/chat/completions")]
    marked = [b for b in sent if MARKER in str(b["messages"][0]["content"])]
    assert [b["messages"][0]["content"] for b in marked] == [f"{MARKER} 1"]  # sent as built, not built again
    assert len(sent) == 2  # task 2's call, of another model_version, was built again by the worker (once)


def _in(seconds: float) -> float:
    import time

    return time.time() + seconds
