"""Fan-out and gather of label requests: RQ jobs per chunk of tasks, a deadline, and exactly-once delivery.

Protocol (both sides use only Redis, so any number of web and worker processes on any machines can join):
- the web side stores the tasks of a request, enqueues one job per chunk and waits on a list where
  workers push each task's outcome as it finishes;
- at the deadline the web side marks the request abandoned, then drains the list once more;
- a worker that finds its request abandoned (or a background run, which has no waiter) writes the
  predictions into Label Studio itself;
- once a request is abandoned both sides may hold a task's outcome; whoever delivers it takes a claim
  with SET NX first, so a prediction reaches Label Studio once, whichever path delivered it;
- a worker's write-back also checks Label Studio for a prediction of that version (claims expire).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import redis
from rq import Queue, Retry

from .store import PREFIX

CLAIM_TTL = 600  # covers the race between the two paths; Label Studio itself is checked beyond it
REQUEST_TTL = 24 * 3600
JOB_RETRY = Retry(max=3, interval=[2, 10, 30])


def _key(request_id: str, part: str = "") -> str:
    return f"{PREFIX}:req:{request_id}" + (f":{part}" if part else "")


def claim_key(project_id: int, model_version: str, task_id: int) -> str:
    return f"{PREFIX}:claim:{project_id}:{model_version}:{task_id}"


@dataclass
class LabelRequest:
    """Tasks handed to the workers for one /predict call or one background run."""

    project_id: int
    tasks: dict[int, dict]  # task id -> task data
    waiter: bool = True  # False for background runs: workers always write back
    run_id: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def submit(connection: redis.Redis, queue: Queue, request: LabelRequest, chunk_size: int,
           job_timeout: int = 300) -> list[str]:
    """Store the request's tasks and enqueue one job per chunk; returns the job ids."""
    rid = request.request_id
    meta = {"project_id": request.project_id, "abandoned": 0 if request.waiter else 1, "run_id": request.run_id,
            "created": time.time()}
    ids = sorted(request.tasks)
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_key(rid), mapping=meta)
        pipe.hset(_key(rid, "tasks"), mapping={str(t): json.dumps(request.tasks[t]) for t in ids})
        pipe.expire(_key(rid), REQUEST_TTL)
        pipe.expire(_key(rid, "tasks"), REQUEST_TTL)
        pipe.execute()
    from .jobs import label_tasks  # jobs imports the labeling stack; the web side only names it

    chunks = [ids[i:i + chunk_size] for i in range(0, len(ids), chunk_size)]
    # Named by their first task: one request may submit its tasks in several calls, ids never collide.
    jobs = [Queue.prepare_data(label_tasks, args=(rid, request.project_id, chunk), job_id=f"label-{rid}-{chunk[0]}",
                               timeout=job_timeout, retry=JOB_RETRY, result_ttl=600, failure_ttl=7 * 24 * 3600)
            for chunk in chunks]
    return [job.id for job in queue.enqueue_many(jobs)]


def gather(connection: redis.Redis, request_id: str, expected: int, deadline: float) -> tuple[dict[int, dict], bool]:
    """Outcomes pushed by workers until all `expected` arrived or the deadline passed; True if it passed.

    At the deadline the request is marked abandoned first and the list drained after, so an outcome
    pushed at any moment is seen either here or by the worker's abandoned check (or both: see claims).
    """
    outcomes = {int(m["task"]): m for m in stream(connection, request_id, expected, deadline)}
    abandoned = len(outcomes) < expected
    if abandoned:
        connection.hset(_key(request_id), "abandoned", 1)
        for raw in connection.lpop(_key(request_id, "done"), 10_000) or []:
            message = json.loads(raw)
            outcomes[int(message["task"])] = message
    return outcomes, abandoned


def stream(connection: redis.Redis, request_id: str, expected: int, deadline: float):
    """Yield outcome messages as workers push them, until `expected` distinct tasks or the deadline."""
    done_key = _key(request_id, "done")
    seen: set[int] = set()
    while len(seen) < expected:
        remaining = deadline - time.time()
        if remaining <= 0:
            return
        popped = connection.blpop([done_key], timeout=min(remaining, 1.0))
        if popped:
            message = json.loads(popped[1])
            if int(message["task"]) not in seen:  # a retried job pushes its tasks again
                seen.add(int(message["task"]))
                yield message


def push_outcome(connection: redis.Redis, request_id: str, message: dict) -> None:
    done_key = _key(request_id, "done")
    with connection.pipeline(transaction=False) as pipe:
        pipe.rpush(done_key, json.dumps(message))
        pipe.expire(done_key, REQUEST_TTL)
        pipe.execute()


def load_request(connection: redis.Redis, request_id: str, task_ids: list[int]) -> tuple[dict, dict[int, dict]]:
    """(request meta, task id -> data) for a worker; meta is empty when Redis lost the request."""
    meta = {k.decode(): v.decode() for k, v in connection.hgetall(_key(request_id)).items()}
    raw = connection.hmget(_key(request_id, "tasks"), [str(t) for t in task_ids])
    return meta, {t: json.loads(v) for t, v in zip(task_ids, raw) if v is not None}


def is_abandoned(connection: redis.Redis, request_id: str) -> bool:
    value = connection.hget(_key(request_id), "abandoned")
    return value is None or value == b"1"  # a request Redis lost has no waiter left


def claim(connection: redis.Redis, project_id: int, model_version: str, task_ids: list[int]) -> list[int]:
    """The tasks this caller won the right to deliver (each task is won by exactly one caller)."""
    with connection.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.set(claim_key(project_id, model_version, task_id), 1, nx=True, ex=CLAIM_TTL)
        won = pipe.execute()
    return [t for t, ok in zip(task_ids, won) if ok]


def release(connection: redis.Redis, project_id: int, model_version: str, task_ids: list[int]) -> None:
    """Give claims back after a delivery failed, so a retry can deliver."""
    if task_ids:
        connection.delete(*[claim_key(project_id, model_version, t) for t in task_ids])
