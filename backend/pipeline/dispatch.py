"""Fan-out and gather of label requests: RQ jobs per chunk of tasks, a deadline, and every outcome accounted.

Protocol (both sides use only Redis, so any number of web and worker processes on any machines can join):
- the web side stores the tasks of a request, enqueues one job per chunk and waits on a list where
  workers push each task's outcome as it finishes;
- at the deadline the web side marks the request abandoned, then drains the list once more;
- a worker that finds its request abandoned (or a background run, which has no waiter) queues the
  predictions for write-back into Label Studio (outbox.py, writeback.py);
- whoever delivers a task takes a claim first (claims.py), so a prediction reaches Label Studio once;
- a job that fails for good (its retries spent, or its worker killed once too often) pushes a failure for
  each of its tasks that has no outcome yet (jobs.label_failed, RQ's failure callback): a waiter never
  waits for an outcome that cannot come.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import redis
from rq import Callback, Queue, Retry

from backend.state.redis_replies import fields, text_hash
from backend.state.store import PREFIX

REQUEST_TTL = 24 * 3600
TAPER_CHUNKS = 4  # with taper, the last this many chunks' worth of tasks go out in quarter-size jobs
JOB_RETRY = Retry(max=3, interval=[2, 10, 30])


def _key(request_id: str, part: str = "") -> str:
    return f"{PREFIX}:req:{request_id}" + (f":{part}" if part else "")


@dataclass
class Fanout:
    """Tasks handed to the workers for one /predict call or one background run (under one request id; the tasks
    may be submitted in several parts)."""

    project_id: int
    waiter: bool = True  # False for background runs: workers always write back
    run_id: str = ""
    model_version: str = ""  # stamped on the failures of a job that fails for good
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def submit(
    connection: redis.Redis,
    queue: Queue,
    fanout: Fanout,
    tasks: dict[int, dict],
    chunk_size: int,
    job_timeout: int = 300,
    calls: dict[int, dict] | None = None,
    taper: bool = False,
) -> list[str]:
    """Store tasks (id -> data) of the fan-out, with the model calls already prepared for some of them (id ->
    PreparedCall.to_json(), so the worker does not build their prompts again), and enqueue one job per chunk;
    returns the job ids.

    `taper` (the last tasks a waiter waits for) makes the last chunks smaller (split()), so the run's last
    calls spread over every worker's free slots instead of queuing behind one worker's.
    """
    rid = fanout.request_id
    meta = {
        "project_id": fanout.project_id,
        "abandoned": 0 if fanout.waiter else 1,
        "run_id": fanout.run_id,
        "model_version": fanout.model_version,
        "created": time.time(),
    }
    ids = sorted(tasks)
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_key(rid), mapping=fields(meta))
        pipe.hset(_key(rid, "tasks"), mapping={str(t): json.dumps(tasks[t]) for t in ids})
        pipe.expire(_key(rid), REQUEST_TTL)
        pipe.expire(_key(rid, "tasks"), REQUEST_TTL)
        if calls:
            pipe.hset(_key(rid, "calls"), mapping={str(t): json.dumps(call) for t, call in calls.items()})
            pipe.expire(_key(rid, "calls"), REQUEST_TTL)
        pipe.execute()
    chunks = split(ids, chunk_size, taper)
    # Named by their first task: one request may submit its tasks in several calls, ids never collide.
    # By dotted path: importing jobs would load the Label Studio SDK into the web process (3 s on a busy machine).
    jobs = [
        Queue.prepare_data(
            "backend.pipeline.jobs.label_tasks",
            args=(rid, fanout.project_id, chunk),
            job_id=f"label-{rid}-{chunk[0]}",
            timeout=job_timeout,
            retry=JOB_RETRY,
            result_ttl=600,
            failure_ttl=7 * 24 * 3600,
            on_failure=Callback("backend.pipeline.jobs.label_failed"),
        )
        for chunk in chunks
    ]
    return [job.id for job in queue.enqueue_many(jobs)]


def stamp_model_version(connection: redis.Redis, request_id: str, model_version: str) -> None:
    """Set the model_version a request's failures carry, when it is known only after the tasks were queued."""
    connection.hset(_key(request_id), "model_version", model_version)


def split(ids: list[int], chunk_size: int, taper: bool = False) -> list[list[int]]:
    """ids in chunks of chunk_size, in order; with taper, the last TAPER_CHUNKS chunks' worth in chunks of a
    quarter of that. A worker takes a job whole: at the end of a run, one that took a full chunk last may still
    be working through it while the other workers' slots have nothing left to do."""
    tail = max(0, len(ids) - TAPER_CHUNKS * chunk_size) if taper else len(ids)
    small = max(1, chunk_size // 4)
    return [ids[i : min(i + chunk_size, tail)] for i in range(0, tail, chunk_size)] + [
        ids[i : i + small] for i in range(tail, len(ids), small)
    ]


def gather(connection: redis.Redis, request_id: str, expected: int, deadline: float) -> tuple[dict[int, dict], bool]:
    """Outcomes pushed by workers until all `expected` arrived or the deadline passed; True if it passed.

    At the deadline the request is marked abandoned first and the list drained after, so an outcome
    pushed at any moment is seen either here or by the worker's abandoned check (or both: see claims).
    """
    outcomes = {int(m["task"]): m for m in stream(connection, request_id, expected, deadline)}
    abandoned = len(outcomes) < expected
    if abandoned:
        connection.hset(_key(request_id), "abandoned", 1)
        popped: list[bytes] = connection.lpop(_key(request_id, "done"), 10_000) or []  # type: ignore[assignment]
        for raw in popped:  # (redis-py types LPOP with a count as one value, not the list it returns)
            message = json.loads(raw)
            outcomes[int(message["task"])] = message
    return outcomes, abandoned


def stream(connection: redis.Redis, request_id: str, expected: int, deadline: float):
    """Yield outcome messages as workers push them, until `expected` distinct tasks or the deadline."""
    yield from follow(connection, request_id, expected, lambda: deadline - time.time())


def follow(connection: redis.Redis, request_id: str, expected: int, time_left):
    """Yield outcome messages until `expected` distinct tasks, or until time_left() (asked at least every
    second) is 0 or less."""
    done_key = _key(request_id, "done")
    seen: set[int] = set()
    while len(seen) < expected:
        remaining = time_left()
        if remaining <= 0:
            return
        popped = connection.blpop([done_key], timeout=max(0.01, min(remaining, 1.0)))
        if popped:
            message = json.loads(popped[1])
            if int(message["task"]) not in seen:  # a retried job pushes its tasks again
                seen.add(int(message["task"]))
                yield message


def push_outcome(connection: redis.Redis, request_id: str, message: dict) -> None:
    done_key, seen_key = _key(request_id, "done"), _key(request_id, "seen")
    with connection.pipeline(transaction=False) as pipe:
        pipe.rpush(done_key, json.dumps(message))
        pipe.sadd(seen_key, int(message["task"]))
        pipe.expire(done_key, REQUEST_TTL)
        pipe.expire(seen_key, REQUEST_TTL)
        pipe.execute()


def without_outcome(connection: redis.Redis, request_id: str, task_ids: list[int]) -> list[int]:
    """The tasks among task_ids for which no outcome was ever pushed."""
    if not task_ids:
        return []
    pushed = connection.smismember(_key(request_id, "seen"), [int(t) for t in task_ids])
    return [t for t, found in zip(task_ids, pushed) if not found]


def load_request(connection: redis.Redis, request_id: str, task_ids: list[int]) -> tuple[dict, dict[int, dict]]:
    """(request meta, task id -> data) for a worker; meta is empty when Redis lost the request."""
    meta = text_hash(connection.hgetall(_key(request_id)))
    raw = connection.hmget(_key(request_id, "tasks"), [str(t) for t in task_ids]) if task_ids else []
    return meta, {t: json.loads(v) for t, v in zip(task_ids, raw) if v is not None}


def load_calls(connection: redis.Redis, request_id: str, task_ids: list[int]) -> dict[int, dict]:
    """The prepared model calls stored with these tasks (task id -> PreparedCall.to_json()), where any."""
    raw = connection.hmget(_key(request_id, "calls"), [str(t) for t in task_ids]) if task_ids else []
    return {t: json.loads(v) for t, v in zip(task_ids, raw) if v is not None}


def is_abandoned(connection: redis.Redis, request_id: str) -> bool:
    value = connection.hget(_key(request_id), "abandoned")
    return value is None or value == b"1"  # a request Redis lost has no waiter left
