"""RQ job functions: label chunks of tasks, read a project's annotations, write predictions back to Label Studio.

Jobs take ids and plain values and build their clients inside (one set per worker process).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import redis
from rq import Queue, get_current_job

from . import cache, dispatch, outbox, store
from .demonstrations import read_project, read_task
from .labeling.budget import BudgetExceeded
from .labeling.errors import MissingText
from .labeling.results import structured_regions
from .llm import LLMClient
from .projects import Contexts, ProjectContext
from .ratelimit import ModelRateLimits
from .runs import record_progress, record_written
from .settings import Settings
from .studio import Studio, StudioError

log = logging.getLogger(__name__)

FLUSH_DELAY_S = 1
FLUSH_PENDING_TTL = 120  # a flush lost with its job is scheduled again by the next rows after this


@dataclass
class WorkerState:
    settings: Settings
    connection: redis.Redis
    contexts: Contexts


@lru_cache(maxsize=1)
def _state() -> WorkerState:
    settings = Settings.from_env()
    job = get_current_job()
    connection = job.connection if job else store.connect(settings.redis_url)
    limiter = None
    if settings.rate_limit_rpm or settings.rate_limit_tpm:
        # One limiter per LLM endpoint and model (the project's, which may not be LLM_MODEL), shared
        # through Redis by every worker on every machine.
        limiter = ModelRateLimits(connection, settings.openai_base_url, rpm=settings.rate_limit_rpm,
                                  tpm=settings.rate_limit_tpm)
    client = LLMClient(settings, before_request=limiter)
    return WorkerState(settings, connection, Contexts(settings, connection, client))


# ---- labeling -----------------------------------------------------------------------------------

def label_tasks(request_id: str, project_id: int, task_ids: list[int]) -> dict:
    """Label a chunk of a request's tasks; push each outcome as it finishes; write back if nobody waits."""
    state = _state()
    meta, data = dispatch.load_request(state.connection, request_id, task_ids)
    if not meta:
        log.warning("request %s is gone from Redis; its %d tasks are found again by the next prelabel scan",
                    request_id, len(task_ids))
        return {"lost": len(task_ids)}
    context = state.contexts.get(project_id)
    messages = label_chunk(state, context, data, request_id)
    queued = 0
    if dispatch.is_abandoned(state.connection, request_id):
        queued = queue_write_back(state, project_id, messages, meta.get("run_id", ""))
    if meta.get("run_id"):
        record_progress(state.connection, meta["run_id"], messages)
    figures = {"labeled": sum(1 for m in messages if m["result"]), "cached": sum(1 for m in messages if m.get("cached")),
               "failed": sum(1 for m in messages if not m["result"]), "queued_for_write_back": queued,
               "truncated": sum(1 for m in messages if m.get("truncated_chars")),
               **{k: sum(int(m.get(k) or 0) for m in messages) for k in ("requests", "prompt_tokens",
                                                                        "completion_tokens")}}
    log.info("project %s: %s", project_id, " ".join(f"{k} {v}" for k, v in figures.items()))
    return figures


def label_chunk(state: WorkerState, context: ProjectContext, data: dict[int, dict], request_id: str) -> list[dict]:
    """Outcome messages for each task, pushed as they finish; cache hits first, misses in batches."""
    messages: list[dict] = []

    def emit(message: dict) -> None:
        # Recorded before it is pushed: whoever reads the outcome then also finds the failure in /status.
        _record_failures(state.connection, context.project_id, [message])
        dispatch.push_outcome(state.connection, request_id, message)
        messages.append(message)

    base = {"model_version": context.model_version, "result": None, "score": None}
    texts: dict[int, str] = {}
    for task_id, task_data in data.items():
        try:
            texts[task_id] = context.spec.text_of(task_data)
        except MissingText as exc:
            emit({**base, "task": task_id, "error": "no_text", "detail": str(exc)})
    labeler = context.labeler
    vectors = dict(zip(texts, labeler.query_vectors(list(texts.values()))))  # one embeddings call per chunk
    ids = list(texts)
    groups = [ids[i:i + labeler.batch_size] for i in range(0, len(ids), labeler.batch_size)]
    # Each group is keyed, looked up and asked in its own thread: building prompts overlaps the model's
    # answers instead of delaying the first call until every prompt of the chunk is built.
    with ThreadPoolExecutor(max_workers=state.settings.concurrency, thread_name_prefix="llm") as pool:
        futures = [pool.submit(_label_group, state, context, base, {t: texts[t] for t in group},
                               {t: vectors[t] for t in group}) for group in groups]
        for future in as_completed(futures):
            for message in future.result():
                emit(message)
    return messages


def _label_group(state: WorkerState, context: ProjectContext, base: dict, texts: dict[int, str],
                 vectors: dict) -> list[dict]:
    """Messages for a group of tasks (one batch request): from the cache, else from the model."""
    messages, keys = [], {}
    for task_id, text in texts.items():
        try:
            keys[task_id] = context.labeler.cache_key(text, vectors[task_id])
        except BudgetExceeded as exc:
            messages.append({**base, "task": task_id, "error": "too_long", "detail": str(exc)})
    misses = []
    for (task_id, key), cached in zip(keys.items(), cache.get_many(state.connection, list(keys.values()))):
        if cached is None:
            misses.append(task_id)
        else:
            messages.append({**base, "task": task_id, "cached": True, **_prediction(context, cached)})
    if misses:
        outcomes = context.labeler.ask_batch([texts[t] for t in misses], [vectors[t] for t in misses])
        for task_id, outcome in zip(misses, outcomes):
            messages.append({**base, "task": task_id,
                             **_from_outcome(state, context, outcome, texts[task_id], keys[task_id])})
    return messages


def _from_outcome(state: WorkerState, context: ProjectContext, outcome, text: str, key: str) -> dict:
    usage = {"requests": outcome.requests, "prompt_tokens": outcome.prompt_tokens,
             "completion_tokens": outcome.completion_tokens, "truncated_chars": outcome.truncated_chars}
    if not outcome.ok:
        return {**usage, "error": outcome.error, "detail": outcome.detail[:300]}
    cached = {"labels": list(outcome.labels), "score": outcome.score}
    if context.spec.structured:
        cached.update(answer=outcome.values, result=structured_regions(context.spec, outcome.values, text))
    cache.put(state.connection, key, cached, state.settings.cache_ttl, state.settings.cache_max_entries)
    return {**usage, **_prediction(context, cached)}


def _prediction(context: ProjectContext, cached: dict) -> dict:
    return {"labels": cached.get("labels"), "answer": cached.get("answer"), **context.prediction(cached)}


def _record_failures(connection: redis.Redis, project_id: int, messages: list[dict]) -> None:
    key = f"{store.PREFIX}:failures:{project_id}"
    failed = {str(m["task"]): json.dumps({"error": m.get("error"), "detail": m.get("detail", ""),
                                          "model_version": m["model_version"], "at": time.time()})
              for m in messages if not m["result"]}
    succeeded = [str(m["task"]) for m in messages if m["result"]]
    with connection.pipeline(transaction=False) as pipe:
        if failed:
            pipe.hset(key, mapping=failed)
        if succeeded:
            pipe.hdel(key, *succeeded)
        pipe.execute()


# ---- writing back -------------------------------------------------------------------------------

def studio_for(connection: redis.Redis, settings: Settings, project_id: int) -> Studio:
    """A Label Studio client from the environment, else from what /setup sent for this project.

    Credentials stay in pairs: the environment's key goes only to LABEL_STUDIO_URL, and the token /setup
    sent goes only back to the hostname it came with, so no caller of /setup can name where a key goes.
    """
    record = store.load_project(connection, project_id)
    if settings.studio_url:
        url = settings.studio_url
        token = settings.studio_api_key.reveal() or (record.studio_token if record else "")
    else:
        url, token = (record.studio_url, record.studio_token) if record else ("", "")
    if not url or not token:
        raise StudioError(f"no Label Studio URL and token for project {project_id}: set LABEL_STUDIO_URL and "
                          "LABEL_STUDIO_API_KEY, or let Label Studio call /setup once")
    return Studio(url, token)


def queue_write_back(state: WorkerState, project_id: int, messages: list[dict], run_id: str = "") -> int:
    """Put labeled tasks nobody waits for into the project's outbox and make sure a flush is coming."""
    rows = [{"task": m["task"], "result": m["result"], "score": m["score"], "model_version": m["model_version"],
             "run": run_id} for m in messages if m["result"]]
    if rows:
        outbox.push(state.connection, project_id, rows)
        enqueue_flush(state.connection, state.settings, project_id)
    return len(rows)


def enqueue_flush(connection: redis.Redis, settings: Settings, project_id: int) -> None:
    """At most one flush pending per project; the short delay lets concurrent chunks share one write."""
    if not connection.set(outbox.pending_key(project_id), 1, nx=True, ex=FLUSH_PENDING_TTL):
        return
    queue = Queue(settings.queue_name, connection=connection)
    queue.enqueue_in(timedelta(seconds=FLUSH_DELAY_S), flush_outbox, project_id, retry=dispatch.JOB_RETRY,
                     result_ttl=60, failure_ttl=7 * 24 * 3600)


def flush_outbox(project_id: int) -> dict:
    """Write a project's queued predictions into Label Studio in large batches, each (task, version) once."""
    state = _state()
    state.connection.delete(outbox.pending_key(project_id))  # rows pushed from now on schedule another flush
    lock = outbox.flush_lock(state.connection, project_id)
    if not lock.acquire():
        enqueue_flush(state.connection, state.settings, project_id)  # the running flusher may miss late rows
        return {"busy": True}
    written = 0
    try:
        while True:
            batch = outbox.peek(state.connection, project_id)
            if not batch:
                break
            written += deliver(state, project_id, batch)
            outbox.trim(state.connection, project_id, len(batch))
    finally:
        lock.release()
    return {"written": written}


def deliver(state: WorkerState, project_id: int, rows: list[dict]) -> int:
    """Create the predictions Label Studio does not have yet; claims and a check there prevent duplicates."""
    by_version: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_version.setdefault(row["model_version"], {})[int(row["task"])] = row
    created = 0
    studio = studio_for(state.connection, state.settings, project_id)
    try:
        for version, chosen in by_version.items():
            won = dispatch.claim(state.connection, project_id, version, list(chosen))
            try:
                existing = studio.predicted_task_ids(project_id, version, won) if won else set()
                fresh = [chosen[t] for t in won if t not in existing]
                if fresh:
                    created += studio.create_predictions(project_id, [
                        {k: row[k] for k in ("task", "result", "score", "model_version")} for row in fresh])
            except StudioError:
                dispatch.release(state.connection, project_id, version, won)
                raise  # RQ retries the flush; the rows are still in the outbox
            for run_id in {row.get("run") for row in fresh if row.get("run")}:
                record_written(state.connection, run_id, sum(1 for row in fresh if row.get("run") == run_id))
    finally:
        studio.close()
    log.info("project %s: wrote %d predictions back to Label Studio", project_id, created)
    return created


# ---- demonstrations -----------------------------------------------------------------------------

def sync_project(project_id: int, training: bool = False) -> dict:
    """Read every annotated task of a project into the live demonstrations, then apply the version policy."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        return read_project(state.connection, state.settings, state.contexts.get(project_id).spec, studio,
                            project_id, training)


def refresh_task(project_id: int, task_id: int) -> dict:
    """Re-read one task after one of its annotations was deleted or cancelled: another may now be newest."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        example = read_task(state.connection, state.settings, state.contexts.get(project_id).spec, studio,
                            project_id, task_id)
    return {"task": task_id, "example": example}
