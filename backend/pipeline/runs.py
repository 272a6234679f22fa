"""Records of background runs (pre-label a whole Label Studio project through the workers): each task's state in
a run, the counts and the figures for /status and the CLI. pipeline/launch.py starts runs."""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.typing import EncodableT

from backend.costs import DEFAULT_PRICES, estimate_cost
from backend.pipeline import failures
from backend.state import store
from backend.state.redis_replies import fields, text, text_hash

PREFIX = store.PREFIX
RUN_TTL = 7 * 24 * 3600
COUNTERS = ("cached", "requests", "prompt_tokens", "completion_tokens")  # work done, every attempt counted


def _key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


def open_run(connection: redis.Redis, run: dict) -> None:
    """Store a new run's record (run_id, project_id, model_version, total, ... and COUNTERS at 0) and list it
    among its project's runs (the newest 20)."""
    run_id, project_id = run["run_id"], run["project_id"]
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(_key(run_id), mapping=fields(run))
        pipe.expire(_key(run_id), RUN_TTL)
        pipe.lpush(f"{PREFIX}:runs:{project_id}", run_id)
        pipe.ltrim(f"{PREFIX}:runs:{project_id}", 0, 19)
        pipe.execute()


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
