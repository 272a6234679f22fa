"""RQ job functions: label chunks of tasks, read a project's annotations, write predictions back to Label Studio.

Jobs take ids and plain values and build their clients inside (one set per worker process).
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import redis
from rq import Queue, get_current_job
from rq.exceptions import AbandonedJobError

from backend.labeling.budget import BudgetExceeded
from backend.labeling.errors import MissingText
from backend.labeling.parser import parse_spec
from backend.labeling.results import structured_regions
from backend.model.client import LLMClient
from backend.model.labeler import PreparedCall
from backend.model.ratelimit import ModelRateLimits
from backend.pipeline import callpool, dispatch, failures, outbox, quality, thresholds
from backend.pipeline.callpool import CallPool
from backend.pipeline.claims import claim_ttl
from backend.pipeline.demonstrations import read_project, read_task
from backend.pipeline.projects import Contexts, ProjectContext
from backend.pipeline.runs import record_progress, unsettled
from backend.pipeline.writeback import RETRY_S, Flusher
from backend.settings import Settings
from backend.state import cache, store
from backend.studio.client import Studio, StudioError

log = logging.getLogger(__name__)

FLUSH_DELAY_S = 1
FLUSH_BUDGET_S = 60  # a flush starts no batch after this long, and schedules the next flush instead


@dataclass
class WorkerState:
    settings: Settings
    connection: redis.Redis
    contexts: Contexts
    calls: CallPool | None = None  # the process's LABEL_CONCURRENCY call slots, shared by its jobs

    def __post_init__(self) -> None:
        if self.calls is None:
            self.calls = CallPool(self.settings.concurrency)


@lru_cache(maxsize=1)
def _state() -> WorkerState:
    settings = Settings.from_env()
    job = get_current_job()
    connection = job.connection if job else store.connect(settings.redis_url)
    # One limiter per LLM endpoint and model (the project's, which may not be LLM_MODEL), shared through Redis
    # by every worker on every machine. Always on: with no RATE_LIMIT_* set it keeps to what the provider's
    # rate-limit headers and 429s say.
    limits = ModelRateLimits(
        connection, settings.openai_base_url, rpm=settings.rate_limit_rpm, tpm=settings.rate_limit_tpm
    )
    client = LLMClient(settings, before_request=limits, after_response=limits.observe)
    return WorkerState(settings, connection, Contexts(settings, connection, client))


def preload() -> WorkerState:
    """Pay a worker's start-up once, before its first job: the labeling stack, the LLM client, the token
    counter and the config parser (a project's context is then built once per fingerprint, by Contexts)."""
    from backend.labeling.budget import TokenCounter

    state = _state()
    TokenCounter(state.settings.model).text("warm up")
    parse_spec(
        '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    return state


# ---- labeling -----------------------------------------------------------------------------------


def label_tasks(request_id: str, project_id: int, task_ids: list[int]) -> dict:
    """Label a chunk of a request's tasks; push each outcome as it finishes; write back if nobody waits."""
    state = _state()
    meta, data = dispatch.load_request(state.connection, request_id, task_ids)
    if not meta:
        log.warning(
            "request %s is gone from Redis; its %d tasks are found again by the next prelabel scan",
            request_id,
            len(task_ids),
        )
        return {"lost": len(task_ids)}
    context = state.contexts.get(project_id)
    calls = {
        task_id: PreparedCall.from_json(call)
        for task_id, call in dispatch.load_calls(state.connection, request_id, task_ids).items()
    }
    messages = label_chunk(state, context, data, request_id, calls)
    queued = 0
    if dispatch.is_abandoned(state.connection, request_id):
        queued = queue_write_back(state, project_id, messages, meta.get("run_id", ""))
    if meta.get("run_id"):
        record_progress(state.connection, meta["run_id"], messages)
    labeled = [m for m in messages if failures.is_prediction(m)]
    figures = {
        "labeled": len(labeled),
        "cached": sum(1 for m in messages if m.get("cached")),
        "failed": len(messages) - len(labeled),
        "queued_for_write_back": queued,
        "truncated": sum(1 for m in messages if m.get("truncated_chars")),
        **{k: sum(int(m.get(k) or 0) for m in messages) for k in ("requests", "prompt_tokens", "completion_tokens")},
    }
    log.info("project %s: %s", project_id, " ".join(f"{k} {v}" for k, v in figures.items()))
    return figures


def label_chunk(
    state: WorkerState,
    context: ProjectContext,
    data: dict[int, dict],
    request_id: str,
    calls: dict[int, PreparedCall] | None = None,
) -> list[dict]:
    """Outcome messages for each task, pushed as they finish; cache hits first, misses in batches. `calls` are
    the model calls the web process already built (used when built for this context's model_version)."""
    calls = {t: c for t, c in (calls or {}).items() if c.model_version == context.model_version}
    messages: list[dict] = []

    def emit(message: dict) -> None:
        # Recorded before it is pushed: whoever reads the outcome then also finds the failure in /status.
        failures.record(state.connection, context.project_id, [message])
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
    # One embeddings call per chunk, for the prompts still to build (a batch prompt selects for all its texts).
    unbuilt = [t for t in texts if t not in calls or labeler.batch_size > 1]
    vectors = dict.fromkeys(texts) | dict(zip(unbuilt, labeler.query_vectors([texts[t] for t in unbuilt])))
    ids = list(texts)
    groups = [ids[i : i + labeler.batch_size] for i in range(0, len(ids), labeler.batch_size)]
    # Each group is keyed, looked up and asked in a slot of the process's call pool: building prompts overlaps
    # the model's answers, and the jobs of this worker share the slots (worker.py takes the next job while
    # this one's last calls run).
    pool = state.calls
    assert pool is not None  # WorkerState made one
    futures = {
        pool.submit(
            _label_group,
            state,
            context,
            base,
            {t: texts[t] for t in group},
            {t: vectors[t] for t in group},
            {t: calls[t] for t in group if t in calls},
        )
        for group in groups
    }
    callpool.handed_over()
    try:
        while futures:
            # Short waits: a job thread's timeout (rq's TimerDeathPenalty) is raised between two of them.
            done, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                for message in future.result():
                    emit(message)
    finally:
        for future in futures:  # the job failed or timed out: its calls not yet started are not made
            future.cancel()
    return messages


def _label_group(
    state: WorkerState,
    context: ProjectContext,
    base: dict,
    texts: dict[int, str],
    vectors: dict,
    calls: dict[int, PreparedCall],
) -> list[dict]:
    """Messages for a group of tasks (one batch request): from the cache, else from the model. Each task's call
    is built once: by the web process (`calls`), else here."""
    messages, prepared = [], {}
    for task_id, text in texts.items():
        try:
            prepared[task_id] = calls.get(task_id) or context.labeler.prepare(text, vectors[task_id])
        except BudgetExceeded as exc:
            messages.append({**base, "task": task_id, "error": "too_long", "detail": str(exc)})
    misses = []
    keys = [call.cache_key for call in prepared.values()]
    for task_id, cached in zip(prepared, cache.get_many(state.connection, keys)):
        if cached is None:
            misses.append(task_id)
        else:
            messages.append({**base, "task": task_id, "cached": True, **_prediction(context, cached)})
    if misses:
        outcomes = context.labeler.ask_batch(
            [texts[t] for t in misses], [vectors[t] for t in misses], [prepared[t] for t in misses]
        )
        for task_id, outcome in zip(misses, outcomes):
            messages.append(
                {
                    **base,
                    "task": task_id,
                    **_from_outcome(state, context, outcome, texts[task_id], prepared[task_id].cache_key),
                }
            )
    return messages


def _from_outcome(state: WorkerState, context: ProjectContext, outcome, text: str, key: str) -> dict:
    usage = {
        "requests": outcome.requests,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "truncated_chars": outcome.truncated_chars,
    }
    if not outcome.ok:
        return {**usage, "error": outcome.error, "detail": outcome.detail[:300]}
    cached = {"labels": list(outcome.labels), "score": outcome.score}
    if context.spec.structured:
        cached.update(answer=outcome.values, result=structured_regions(context.spec, outcome.values, text))
    cache.put(state.connection, key, cached, state.settings.cache_ttl, state.settings.cache_max_entries)
    return {**usage, **_prediction(context, cached)}


def _prediction(context: ProjectContext, cached: dict) -> dict:
    return {"labels": cached.get("labels"), "answer": cached.get("answer"), **context.prediction(cached)}


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
        raise StudioError(
            f"no Label Studio URL and token for project {project_id}: set LABEL_STUDIO_URL and "
            "LABEL_STUDIO_API_KEY, or let Label Studio call /setup once"
        )
    return Studio(url, token, timeout=settings.studio_timeout)


def queue_write_back(state: WorkerState, project_id: int, messages: list[dict], run_id: str = "") -> int:
    """Put labeled tasks nobody waits for into the project's outbox and make sure a flush is coming."""
    rows = [
        {
            "task": m["task"],
            "result": m["result"],
            "score": m["score"],
            "model_version": m["model_version"],
            "run": run_id,
        }
        for m in messages
        if failures.is_prediction(m)
    ]
    if rows:
        outbox.push(state.connection, project_id, rows)
        enqueue_flush(state.connection, state.settings, project_id)
    return len(rows)


def enqueue_flush(connection: redis.Redis, settings: Settings, project_id: int, delay: float = FLUSH_DELAY_S) -> bool:
    """At most one flush pending per project; the short delay lets concurrent chunks share one write.

    True if this call enqueued one. The pending mark outlives the job's longest possible run, so a flush
    lost with its worker is scheduled again by the next rows, or by a worker's maintenance sweep.
    """
    timeout = flush_timeout(settings)
    if not connection.set(outbox.pending_key(project_id), 1, nx=True, ex=int(delay + timeout) + 60):
        return False
    queue = Queue(settings.queue_name, connection=connection)
    queue.enqueue_in(
        timedelta(seconds=max(delay, 0.0)),
        flush_outbox,
        project_id,
        job_timeout=timeout,
        retry=dispatch.JOB_RETRY,
        result_ttl=60,
        failure_ttl=7 * 24 * 3600,
    )
    return True


def flush_timeout(settings: Settings) -> int:
    """A flush stops starting batches after FLUSH_BUDGET_S; the last batch takes at most a claim's lifetime."""
    return int(FLUSH_BUDGET_S + claim_ttl(settings.studio_timeout)) + 30


def flush_outbox(project_id: int) -> dict:
    """Write a project's queued predictions into Label Studio in large batches, each (task, version) once."""
    state = _state()
    state.connection.delete(outbox.pending_key(project_id))  # rows pushed from now on schedule another flush
    flusher = Flusher(
        state.connection, state.settings, project_id, lambda: studio_for(state.connection, state.settings, project_id)
    )
    report = flusher.flush(FLUSH_BUDGET_S)
    if outbox.size(state.connection, project_id):  # rows held, failing, or not reached within the budget
        enqueue_flush(
            state.connection,
            state.settings,
            project_id,
            FLUSH_DELAY_S if report.more else max(report.retry_in, RETRY_S),
        )
    return report.as_dict()


def sweep_outboxes(connection: redis.Redis, settings: Settings) -> list[int]:
    """Schedule a flush for every project whose outbox holds rows and has none pending (a flush job lost
    with its worker, or failed for good); returns those projects. Run by every worker's maintenance."""
    return [p for p in outbox.projects(connection) if enqueue_flush(connection, settings, p, 0)]


# ---- failures -----------------------------------------------------------------------------------


def label_failed(job, connection: redis.Redis, exc_type, exc_value, _traceback) -> None:
    """RQ's failure callback of label jobs: once a job fails for good, each of its tasks without an outcome
    gets a failure with the reason, in /status, in its run and for whoever waits for it."""
    if job.retries_left:
        return  # RQ runs it again
    request_id, project_id, task_ids = job.args
    meta, _ = dispatch.load_request(connection, request_id, [])
    run_id = meta.get("run_id", "")
    # A run's task is settled once it has a state (labeled tasks had their rows queued in the same job run);
    # a waiter needs an outcome for every task it was not sent one for.
    missing = (
        unsettled(connection, run_id, list(task_ids))
        if run_id
        else dispatch.without_outcome(connection, request_id, list(task_ids))
    )
    if not meta or not missing:
        return
    what = (
        "its worker stopped (killed, or lost its Redis connection)"
        if exc_type is AbandonedJobError
        else f"{getattr(exc_type, '__name__', 'error')}: {exc_value}"
    )
    detail = f"the labeling job failed {1 + dispatch.JOB_RETRY.max} times; last: {what}"[:300]
    messages = [
        {
            "task": task,
            "result": None,
            "score": None,
            "error": "job_failed",
            "detail": detail,
            "model_version": meta.get("model_version", ""),
        }
        for task in missing
    ]
    failures.record(connection, project_id, messages)
    if run_id:
        record_progress(connection, run_id, messages, source="lost")
    else:
        for message in messages:
            dispatch.push_outcome(connection, request_id, message)
    log.warning(
        "project %s: a labeling job failed for good, %d tasks without a prediction: %s",
        project_id,
        len(missing),
        detail,
    )


# ---- demonstrations -----------------------------------------------------------------------------


def sync_project(project_id: int, training: bool = False) -> dict:
    """Read every annotated task of a project into the live demonstrations, then apply the version policy;
    the live quality is rebuilt from the same Label Studio (a sync follows a loss of Redis)."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        spec = state.contexts.get(project_id).spec
        report = read_project(state.connection, state.settings, spec, studio, project_id, training)
        if quality.built_at(state.connection, project_id) is None:
            quality.rebuild(state.connection, state.settings, studio, spec, project_id, _auto(state, project_id))
        return report


# ---- live quality -------------------------------------------------------------------------------


def review_annotations(project_id: int, task_ids: list[int]) -> dict:
    """Compare the annotations of these tasks (after annotation events) with the predictions their annotators
    saw; a project never read in full is read in full first."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        spec = _quality_spec(state, studio, project_id)
        auto = _auto(state, project_id)
        if quality.built_at(state.connection, project_id) is None:
            found = quality.rebuild(state.connection, state.settings, studio, spec, project_id, auto)
        else:
            found = quality.review_tasks(state.connection, state.settings, studio, spec, project_id, task_ids, auto)
    return {"reviewed": found["reviewed"], "accepted_share": found["accepted_share"]}


def rebuild_quality(project_id: int) -> dict:
    """Read the project's live quality from Label Studio again (after a loss of Redis, or on request)."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        found = quality.rebuild(
            state.connection,
            state.settings,
            studio,
            _quality_spec(state, studio, project_id),
            project_id,
            _auto(state, project_id),
        )
    return {"reviewed": found["reviewed"], "accepted_share": found["accepted_share"]}


def refresh_quality(project_id: int) -> dict:
    """Recompute the figures from the records (after annotations were deleted)."""
    state = _state()
    found = quality.refresh(
        state.connection, state.settings, project_id, state.contexts.get(project_id).spec, _auto(state, project_id)
    )
    return {"reviewed": found["reviewed"]}


def _quality_spec(state: WorkerState, studio: Studio, project_id: int):
    """The registered config's spec, else (Redis lost it) the one Label Studio has."""
    record = store.load_project(state.connection, project_id)
    if record and record.label_config:
        return state.contexts.get(project_id).spec
    return parse_spec(studio.project(project_id).get("label_config") or "")


def _auto(state: WorkerState, project_id: int) -> bool:
    record = store.load_project(state.connection, project_id)
    return thresholds.uses_auto(record.options if record else None)


def refresh_task(project_id: int, task_id: int) -> dict:
    """Re-read one task after one of its annotations was deleted or cancelled: another may now be newest."""
    state = _state()
    with studio_for(state.connection, state.settings, project_id) as studio:
        example = read_task(
            state.connection, state.settings, state.contexts.get(project_id).spec, studio, project_id, task_id
        )
    return {"task": task_id, "example": example}
