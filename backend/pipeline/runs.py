"""Background runs: pre-label a whole Label Studio project through the workers, with progress for /status and
the CLI."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import redis
from redis.typing import EncodableT
from rq import Queue

from backend.costs import DEFAULT_PRICES, estimate_cost
from backend.labeling.errors import MissingText
from backend.pipeline import dispatch, failures
from backend.pipeline.demonstrations import read_project
from backend.pipeline.projects import Contexts, register
from backend.state import store
from backend.state.redis_replies import fields, text, text_hash

if TYPE_CHECKING:
    from backend.studio.client import Studio

PREFIX = store.PREFIX
RUN_TTL = 7 * 24 * 3600
COUNTERS = ("cached", "requests", "prompt_tokens", "completion_tokens")  # work done, every attempt counted


def _key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


def pending_tasks(studio: Studio, project_id: int, model_version: str, missing: bool) -> dict[int, dict]:
    """Task id -> data of the unannotated tasks to label: all, or those without a prediction of this version."""
    tasks = {int(t["id"]): t.get("data") or {} for t in studio.tasks(project_id) if not t.get("total_annotations")}
    if missing and tasks:
        done = studio.predicted_task_ids(project_id, model_version)
        tasks = {t: d for t, d in tasks.items() if t not in done}
    return tasks


def start_run(
    connection: redis.Redis,
    queue: Queue,
    contexts: Contexts,
    studio: Studio,
    project_id: int,
    missing: bool = True,
    chunk_size: int = 8,
) -> dict:
    """Register the project from Label Studio, find the tasks to label and enqueue them; returns the run."""
    project = studio.project(project_id)
    register(connection, project_id, project["label_config"], studio_url=studio.url)
    stored = store.load_project(connection, project_id)
    if stored is None or not stored.synced_at:  # first run, or Redis lost the demonstrations: read them first
        read_project(connection, contexts.settings, contexts.get(project_id).spec, studio, project_id)
    context = contexts.get(project_id)
    tasks = pending_tasks(studio, project_id, context.model_version, missing)
    labelable, unreadable = {}, []
    for task_id, data in tasks.items():
        try:
            context.spec.text_of(data)
            labelable[task_id] = data
        except MissingText as exc:  # no prediction for it, and /status says why
            unreadable.append(
                {
                    "task": task_id,
                    "result": None,
                    "error": "no_text",
                    "detail": str(exc),
                    "model_version": context.model_version,
                }
            )
    run_id = uuid.uuid4().hex[:12]
    fanout = dispatch.Fanout(project_id, waiter=False, run_id=run_id, model_version=context.model_version)
    run = {
        "run_id": run_id,
        "project_id": project_id,
        "model_version": context.model_version,
        "model": context.labeler.prompt.model,
        "request_id": fanout.request_id,
        "total": len(tasks),
        "started": time.time(),
        "mode": "missing" if missing else "all",
        **{c: 0 for c in COUNTERS},
    }
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_key(run_id), mapping=fields(run))
        pipe.expire(_key(run_id), RUN_TTL)
        pipe.lpush(f"{PREFIX}:runs:{project_id}", run_id)
        pipe.ltrim(f"{PREFIX}:runs:{project_id}", 0, 19)
        pipe.execute()
    if unreadable:
        failures.record(connection, project_id, unreadable)
        record_progress(connection, run_id, unreadable)
    if labelable:
        dispatch.submit(connection, queue, fanout, labelable, chunk_size, contexts.settings.job_timeout)
    return run_status(connection, run_id)


# Each task of a run holds one state, so counts stay exact however often a job runs, a row is written or a
# failure is reported: labeled (waiting for its write-back), written (Label Studio holds the prediction),
# failed (with its reason in the project's failure list), withheld (below the score threshold).
# Sources rank what may overwrite what: a labeling result never undoes a write; a write-back result (written,
# or failed when Label Studio refused it) overrides a labeling result; a job's final failure ("lost") only
# fills tasks that have no state yet.
# KEYS: run hash, run's task-state hash. ARGV: source, TTL of the states, then task, state pairs.
_MARK = """
local source = ARGV[1]
for i = 3, #ARGV, 2 do
  local task, new = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[2], task)
  local take
  if source == 'label' then
    take = (not old) or old == 'failed' or old == 'withheld'
  elseif source == 'write' then
    take = old ~= 'written' and not (new == 'failed' and old == 'failed')
  else
    take = not old
  end
  if take and old ~= new then
    redis.call('HSET', KEYS[2], task, new)
    if old then redis.call('HINCRBY', KEYS[1], 'n_' .. old, -1) end
    redis.call('HINCRBY', KEYS[1], 'n_' .. new, 1)
  end
end
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"""
STATES = ("labeled", "written", "failed", "withheld")


def mark(connection: redis.Redis, run_id: str, states: dict[int, str], source: str) -> None:
    """Set tasks' states in a run: source "label" (a job's outcomes), "write" (the write-back's) or "lost"
    (a job that failed for good: only tasks with no outcome)."""
    if not run_id or not states or not connection.exists(_key(run_id)):
        return  # Redis lost the run: states alone would make a run without a total
    pairs = (item for task, state in states.items() for item in (str(task), state))
    args: list[EncodableT] = [source, RUN_TTL, *pairs]
    connection.eval(_MARK, 2, _key(run_id), _key(run_id) + ":tasks", *args)


def record_progress(connection: redis.Redis, run_id: str, messages: list[dict], source: str = "label") -> None:
    """A job's outcome messages: task states, and the work it took (tokens and calls count every attempt)."""
    if not connection.exists(_key(run_id)):
        return
    mark(connection, run_id, {int(m["task"]): _state(m) for m in messages}, source)
    with connection.pipeline(transaction=False) as pipe:
        pipe.hincrby(_key(run_id), "cached", sum(1 for m in messages if m.get("cached")))
        for name in ("requests", "prompt_tokens", "completion_tokens"):
            pipe.hincrby(_key(run_id), name, sum(int(m.get(name) or 0) for m in messages))
        pipe.execute()


def unsettled(connection: redis.Redis, run_id: str, task_ids: list[int]) -> list[int]:
    """The tasks among task_ids that have no state in the run yet (no outcome was recorded for them)."""
    if not task_ids:
        return []
    states = connection.hmget(_key(run_id) + ":tasks", [str(t) for t in task_ids])
    return [t for t, state in zip(task_ids, states) if state is None]


def failed_tasks(connection: redis.Redis, run_id: str) -> list[int]:
    """The run's tasks that ended failed, in id order (their reasons are in the project's failure list)."""
    states = connection.hscan_iter(_key(run_id) + ":tasks", count=1000)
    return sorted(int(task) for task, state in states if state == b"failed")


def _state(message: dict) -> str:
    if failures.is_prediction(message):
        return "labeled"
    return "withheld" if message.get("error") == "low_score" else "failed"


def run_status(connection: redis.Redis, run_id: str, prices: dict | None = None) -> dict:
    """Counts, rate and ETA of a run; {} if Redis no longer knows it."""
    raw = text_hash(connection.hgetall(_key(run_id)))
    if "total" not in raw or "started" not in raw:
        return {}  # unknown, or only counters written after Redis lost the run
    status: dict[str, Any] = {
        k: (int(v) if k in COUNTERS + ("total", "project_id") or k.startswith("n_") else v) for k, v in raw.items()
    }
    counts = {state: status.pop(f"n_{state}", 0) for state in STATES}
    status.update(
        done=counts["labeled"] + counts["written"],
        written_back=counts["written"],
        failed=counts["failed"],
        withheld=counts["withheld"],
        waiting_write_back=counts["labeled"],
    )
    # Finished: every task has a prediction Label Studio confirmed, or a recorded reason why not.
    finished = counts["written"] + counts["failed"] + counts["withheld"]
    elapsed = max(time.time() - float(status["started"]), 1e-6)
    rate = finished / elapsed
    status.update(
        finished=finished,
        elapsed_s=round(elapsed, 1),
        tasks_per_s=round(rate, 2),
        cost_usd=estimate_cost(
            status.get("model", ""), status["prompt_tokens"], status["completion_tokens"], prices or DEFAULT_PRICES
        ),
        eta_s=round((status["total"] - finished) / rate, 1) if rate and finished < status["total"] else 0.0,
        state="finished" if finished >= status["total"] else "running",
    )
    return status


def project_runs(connection: redis.Redis, project_id: int, limit: int = 5, prices: dict | None = None) -> list[dict]:
    ids = [text(r) for r in connection.lrange(f"{PREFIX}:runs:{project_id}", 0, limit - 1)]
    return [s for s in (run_status(connection, r, prices) for r in ids) if s]
