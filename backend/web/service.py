"""What the backend's endpoints do, on plain dicts: setup, predict, webhook, versions, health, status.

Every answer depends only on the request and Redis, never on which process or machine serves it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
from rq import Queue, Worker

from backend import __version__
from backend.evaluation.live import controls_of, figures, summary
from backend.labeling.budget import BudgetExceeded, TokenCounter
from backend.labeling.errors import MissingText, UnsupportedConfig
from backend.labeling.parser import parse_spec
from backend.model.embeddings import MissingEmbeddings
from backend.model.options import BadOptions, parse_options
from backend.pipeline import dispatch, failures, outbox, quality, thresholds
from backend.pipeline.claims import Claims, claim_ttl
from backend.pipeline.projects import Contexts, ProjectContext, UnknownProject, parse_project_id, register
from backend.pipeline.waiting import waiting_for
from backend.settings import Settings, redacted
from backend.state import cache, store
from backend.web.webhooks import BadEvent, enqueue_sync, handle_event

if TYPE_CHECKING:
    from backend.model.labeler import PreparedCall

log = logging.getLogger(__name__)


KEY_GROUP = 128  # tasks keyed (and their misses enqueued) at a time by /predict


class HTTPError(Exception):
    """An answer with a status and a JSON message (4xx for the caller's mistakes, 503 for missing services)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Service:
    """One per web process; holds only connections and caches, no project state of its own."""

    def __init__(self, settings: Settings, connection: redis.Redis):
        self.settings = settings
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=connection)
        self.contexts = Contexts(settings, connection)
        _warm_up(settings)

    # ---- /setup ---------------------------------------------------------------------------------

    def setup(self, body) -> dict:
        body = _object(body)
        project_id = _project(body.get("project"))
        try:
            options = parse_options(body.get("extra_params"), self.settings)
            # The token /setup sends is kept only when the environment does not give both URL and key.
            own = bool(self.settings.studio_url and self.settings.studio_api_key)
            register(
                self.connection,
                project_id,
                _text(body, "schema"),
                options,
                studio_url=_text(body, "hostname"),
                studio_token=None if own else _text(body, "access_token"),
            )
        except (BadOptions, UnsupportedConfig) as exc:
            raise HTTPError(400, str(exc)) from None
        self._ensure_synced(project_id, wait=self.settings.setup_wait)
        context = self._context(project_id)
        return {"model_version": context.model_version}

    def _ensure_synced(self, project_id: int, wait: float = 0.0) -> None:
        """Start a first read of the project's annotations when none was made since Redis last lost them."""
        record = store.load_project(self.connection, project_id)
        if record is None or record.synced_at:
            return
        if not (self.settings.studio_url or record.studio_url):
            return
        job = enqueue_sync(self.queue, project_id)
        deadline = time.time() + wait
        while time.time() < deadline and job.get_status(refresh=True) not in ("finished", "failed", "canceled"):
            time.sleep(0.05)

    # ---- /predict -------------------------------------------------------------------------------

    def predict(self, body) -> dict:
        body = _object(body)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise HTTPError(400, "tasks must be a non-empty list of Label Studio tasks")
        for task in tasks:
            if (
                not isinstance(task, dict)
                or not isinstance(task.get("id"), int)
                or not isinstance(task.get("data"), dict)
            ):
                raise HTTPError(400, f"each task needs an integer id and a data object, got {str(task)[:120]!r}")
        project_id = _project(body.get("project") or tasks[0].get("project"))
        config = body.get("label_config") or None
        if config is not None and not isinstance(config, str):
            raise HTTPError(400, "label_config must be a string")
        if config:
            try:
                register(self.connection, project_id, config)
            except UnsupportedConfig as exc:
                raise HTTPError(400, str(exc)) from None
        self._ensure_synced(project_id)
        context = self._context(project_id, config)
        return {"results": self._predictions(context, tasks), "model_version": context.model_version}

    def _predictions(self, context: ProjectContext, tasks: list[dict]) -> list[dict]:
        deadline = time.time() + self.settings.predict_deadline  # counted from the request's arrival
        entries: dict[int, dict] = {}
        texts: dict[int, str] = {}
        for task in tasks:
            try:
                texts[task["id"]] = context.spec.text_of(task["data"])
            except MissingText as exc:
                entries[task["id"]] = _empty(context, f"no_text: {exc}")
        data = {t["id"]: t["data"] for t in tasks}
        fanout = dispatch.Fanout(context.project_id, model_version=context.model_version)
        submitted = 0
        ids = list(texts)
        # Prompts are built (for their cache keys) a group at a time and each group's misses go to the
        # workers at once, with the calls built here: with thousands of tasks the workers start while the rest
        # is still being keyed, and no task's prompt is built twice.
        for start in range(0, len(ids), KEY_GROUP):
            group = {task_id: texts[task_id] for task_id in ids[start : start + KEY_GROUP]}
            calls = self._prepare_calls(context, group)
            keys = [calls[t].cache_key for t in calls]
            hits = dict(zip(calls, cache.get_many(self.connection, keys)))
            misses = {}
            for task_id in group:
                hit = hits.get(task_id)
                if hit is None:
                    misses[task_id] = data[task_id]
                else:
                    entries[task_id] = {"model_version": context.model_version, **context.prediction(hit)}
            if misses:
                dispatch.submit(
                    self.connection,
                    self.queue,
                    fanout,
                    misses,
                    self.settings.chunk_size,
                    self.settings.job_timeout,
                    calls={t: calls[t].to_json() for t in misses if t in calls},
                    taper=start + KEY_GROUP >= len(ids),
                )
                submitted += len(misses)
        if submitted:
            outcomes, _ = self._gather(context, fanout.request_id, submitted, deadline)
            entries.update(outcomes)
        # Every task answered with a prediction is claimed, cache hits and outcomes in time too: a prelabel
        # run or an abandoned request's write-back may be delivering the same task and version right now.
        self._claim(context, entries, fanout.request_id)
        return [_lean(entries.get(t["id"]) or _empty(context, "not labeled before the deadline")) for t in tasks]

    def _prepare_calls(self, context: ProjectContext, texts: dict[int, str]) -> dict[int, PreparedCall]:
        """The model calls (with their cache keys) of the tasks whose prompt this process can build; the rest
        go to the workers as misses, which build them (with embedding selection, a text whose vector no worker
        has cached yet; a text too long for the budget, which the worker reports)."""
        if not context.labeler.ready:
            return {}
        vectors = context.labeler.query_vectors(list(texts.values()))
        calls = {}
        for (task_id, text), vector in zip(texts.items(), vectors):
            try:
                calls[task_id] = context.labeler.prepare(text, vector)
            except (MissingEmbeddings, BudgetExceeded):
                continue
        return calls

    def _gather(
        self, context: ProjectContext, request_id: str, count: int, deadline: float
    ) -> tuple[dict[int, dict], bool]:
        outcomes, abandoned = dispatch.gather(self.connection, request_id, count, deadline)
        if abandoned:
            log.warning(
                "project %s: %d of %d tasks not labeled within %.0f s; the workers will write them back",
                context.project_id,
                count - len(outcomes),
                count,
                self.settings.predict_deadline,
            )
        return outcomes, abandoned

    def _claim(self, context: ProjectContext, entries: dict[int, dict], request_id: str) -> None:
        """A task the write-back holds, or has written, is answered empty: Label Studio gets it from there."""
        by_version: dict[str, list[int]] = {}
        for task_id, entry in entries.items():
            if failures.is_prediction(entry):
                by_version.setdefault(entry["model_version"], []).append(task_id)
        holder = f"predict:{request_id}"
        for version, task_ids in by_version.items():
            claims = Claims(self.connection, context.project_id, version, claim_ttl(self.settings.studio_timeout))
            for task_id, held_by in claims.take(task_ids, holder).items():
                if held_by != holder:
                    entries[task_id] = _empty(context, "delivered by the write-back")

    # ---- /webhook, /versions --------------------------------------------------------------------

    def webhook(self, body) -> dict:
        body = _object(body)
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise HTTPError(400, "a webhook body needs an action")
        project = body.get("project")
        project_id = _project(project.get("id") if isinstance(project, dict) else project)
        config = project.get("label_config") if isinstance(project, dict) else None
        try:
            if config:
                register(self.connection, project_id, config)
            if not config:
                record = store.load_project(self.connection, project_id)
                config = record.label_config if record else ""
            # The spec alone (parsed once per config): building the project's whole context here, as before,
            # cost a rebuild of its demonstrations per event, since each event moves the version.
            spec = parse_spec(config) if config else None
            return handle_event(self.connection, self.queue, self.settings, spec, project_id, action, body)
        except (BadEvent, UnsupportedConfig) as exc:
            raise HTTPError(400, str(exc)) from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a field of the wrong JSON type
            raise HTTPError(400, f"cannot read the {action} event: {exc!r}") from None

    def versions(self, project) -> dict:
        project_id = parse_project_id(project)
        if project_id is None or not self._known(project_id):
            return {"versions": [], "model_version": None}
        version = self._context(project_id).model_version
        return {"versions": [version], "model_version": version}

    # ---- /health, /metrics ----------------------------------------------------------------------

    def health(self) -> tuple[int, dict]:
        redis_ok = store.ping(self.connection)
        answer: dict[str, object] = {
            "status": "UP" if redis_ok else "DOWN",
            "version": __version__,
            "model_class": "FewshotModel",
            "redis": "ok" if redis_ok else f"unreachable at {redacted(self.settings.redis_url)}",
            "llm": {
                "base_url": self.settings.openai_base_url or "https://api.openai.com/v1",
                "model": self.settings.model,
                "mode": self.settings.answer_mode,
                "api_key_set": bool(self.settings.openai_api_key),
            },
        }
        if redis_ok:
            answer["workers"] = Worker.count(queue=self.queue)
            answer["queued"] = self.queue.count
            if not answer["workers"]:
                answer["warning"] = (
                    "no rq worker listens on queue " + self.queue.name + ": start `fewshot-prelabel worker`"
                )
        return (200 if redis_ok else 503), answer

    def status(self, project=None) -> dict:
        """Progress of background runs, failures and demonstrations, per project (or every project)."""
        from backend.model.ratelimit import limits_status
        from backend.pipeline.runs import project_runs

        ids = [_project(project)] if project not in (None, "") else store.project_ids(self.connection)
        projects = []
        for project_id in ids:
            listed = failures.read(self.connection, project_id)
            withheld = sum(1 for f in listed.values() if f.get("error") == "low_score")
            record = store.load_project(self.connection, project_id)
            context = self._context(project_id) if record and record.label_config else None
            runs = project_runs(self.connection, project_id, prices=self.settings.price_table)
            for run in runs:
                run["waiting_for"] = waiting_for(self.connection, self.queue, run, self.settings)
            projects.append(
                {
                    "project_id": project_id,
                    "model_version": context.model_version if context else None,
                    # the demonstration selection in effect (DEMO_SELECTION=auto picks one) and why
                    "selection": context.labeler.choice.as_dict() if context else None,
                    "demonstrations": store.demonstration_counts(self.connection, project_id),
                    "runs": runs,
                    "failed_tasks": len(listed) - withheld,
                    "withheld_tasks": withheld,  # below the score threshold (LOW_SCORE_ACTION=skip)
                    "failures": dict(list(listed.items())[:20]),
                    "write_back_queue": outbox.size(self.connection, project_id),
                    "spend_today": self.contexts.guard(project_id, self.settings.model).status(),
                    "quality": self._quality_summary(project_id),
                }
            )
        return {
            "projects": projects,
            "queued": self.queue.count,
            "workers": Worker.count(queue=self.queue),
            "cache_entries": cache.size(self.connection),
            # per LLM endpoint and model: the limits in force, where they came from, the 429s seen
            "rate_limits": limits_status(self.connection),
        }

    # ---- /quality -------------------------------------------------------------------------------

    def quality(self, project) -> dict:
        """The live quality figures of a project; a project whose records Redis lost (or never had) is read
        again from Label Studio by a worker, and the answer says so ("rebuilding")."""
        project_id = _project(project)
        built = quality.built_at(self.connection, project_id)
        rebuilding = False
        if built is None:
            rebuilding = self._rebuild_quality(project_id)
        found = quality.stored_figures(self.connection, project_id)
        if found is None:
            record = store.load_project(self.connection, project_id)
            spec = parse_spec(record.label_config) if record and record.label_config else None
            found = figures([], controls_of(spec) if spec else [], self.settings.quality_target)
        return {
            "project_id": project_id,
            "rebuilding": rebuilding,
            "built_at": built,
            "threshold_auto": thresholds.applied_threshold(self.connection, project_id),
            **found,
        }

    def _rebuild_quality(self, project_id: int) -> bool:
        """Start a full read (once at a time) when Label Studio can be reached; True if one is under way."""
        record = store.load_project(self.connection, project_id)
        if not (self.settings.studio_url or (record and record.studio_url)):
            return False
        job_id = f"quality-rebuild-{project_id}"
        job = self.queue.fetch_job(job_id)
        if job is not None and job.get_status(refresh=True) in ("queued", "started", "scheduled", "deferred"):
            return True
        if job is not None:
            job.delete()
        self.queue.enqueue(
            "backend.pipeline.jobs.rebuild_quality",
            project_id,
            job_id=job_id,
            job_timeout=3600,
            result_ttl=10,
            failure_ttl=600,
        )
        return True

    def metrics(self) -> dict:
        return {
            "cache_entries": cache.size(self.connection),
            "projects": store.project_ids(self.connection),
            "queued": self.queue.count,
            "workers": Worker.count(queue=self.queue),
        }

    # ---- helpers --------------------------------------------------------------------------------

    def _quality_summary(self, project_id: int) -> dict | None:
        """The live quality in short (GET /quality has it all); None before any figure was computed."""
        found = quality.stored_figures(self.connection, project_id)
        if found is None:
            return None
        applied = thresholds.applied_threshold(self.connection, project_id) or {}
        return {**summary(found), "threshold_auto": applied.get("threshold")}

    def _known(self, project_id: int) -> bool:
        record = store.load_project(self.connection, project_id)
        return bool(record and record.label_config)

    def _context(self, project_id: int, config: str | None = None) -> ProjectContext:
        try:
            return self.contexts.get(project_id, config)
        except UnknownProject as exc:
            raise HTTPError(404, str(exc)) from None
        except UnsupportedConfig as exc:
            raise HTTPError(400, str(exc)) from None


def _warm_up(settings: Settings) -> None:
    """Load the token counter and the config parser now, at start: Label Studio gives /setup 3 s, and the
    first one in a fresh web process otherwise spends about a second loading them (more on a busy machine)."""
    TokenCounter(settings.model).text("warm up")
    parse_spec(WARM_UP_CONFIG)


WARM_UP_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="a"/><Choice value="b"/></Choices></View>'
)


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


def _project(value) -> int:
    project_id = parse_project_id(value)
    if project_id is None:
        raise HTTPError(400, f'a project id is needed ("<id>.<created_ts>" or an integer), got {value!r}')
    return project_id


def _text(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise HTTPError(400, f"{key} must be a string")
    return value or None


def _empty(context: ProjectContext, reason: str) -> dict:
    # No "result" key: Label Studio skips the entry but keeps the one-entry-per-task alignment.
    return {"model_version": context.model_version, "score": None, "_reason": reason}


def _lean(entry: dict) -> dict:
    lean = {"model_version": entry["model_version"], "score": entry.get("score")}
    # "result": null would make Label Studio reject the whole batch; "result": [] is an answer (the model
    # found nothing to mark) and goes out as a prediction like any other.
    if failures.is_prediction(entry):
        lean["result"] = entry["result"]
    return lean
