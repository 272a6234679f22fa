"""The `label` command through the rq workers: a file becomes a short-lived project in Redis that any worker serves.

Start-up counts (a user times the command from launch to exit): the tasks go to the queue before this process
loads the labeler and the LLM client stack (about a second on a busy machine), so the workers label while it
builds the project's context for model_version and the run's description.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import redis
from rq import Queue, Worker
from rq.job import Job

from backend.pipeline import dispatch, failures
from backend.pipeline.projects import Contexts, demonstration_from_example, register
from backend.pipeline.waiting import WorkerWatch
from backend.state import store

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.model.labeler import Labeler, Outcome
    from backend.settings import Settings

FILE_PROJECT_BASE = 2_000_000_000  # far above any Label Studio project id


class WorkerLabeling:
    """Registers the file's config, options and seeds as a project, then labels items through the queue."""

    def __init__(
        self,
        settings: Settings,
        connection: redis.Redis,
        config: str,
        examples: list[Example],
        options: dict,
        on_context: Callable[[Labeler], None] | None = None,
    ):
        """`examples` in their prompt order (labeling.prompt.order_examples); `on_context` is called with the
        project's labeler once the tasks are queued (the command describes the run with it)."""
        self.settings = settings
        self.on_context = on_context
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=connection)
        self.project_id = FILE_PROJECT_BASE + int(connection.incr(f"{store.PREFIX}:file-project-seq"))
        register(connection, self.project_id, config, options)
        demos = {index: demonstration_from_example(example, {"id": index}) for index, example in enumerate(examples)}
        store.replace_live_demonstrations(connection, self.project_id, demos)
        store.activate_demonstrations(connection, self.project_id)

    def workers(self) -> int:
        return Worker.count(queue=self.queue)

    def __call__(self, items: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, Outcome]]:
        keys = {}
        tasks = {}
        for index, (key, data) in enumerate(items):
            keys[index], tasks[index] = key, data
        if not tasks:
            return
        fanout = dispatch.Fanout(self.project_id)
        job_ids = dispatch.submit(
            self.connection, self.queue, fanout, tasks, self.settings.chunk_size, self.settings.job_timeout, taper=True
        )
        # The workers label already; their outcomes wait in Redis while this builds the context they use.
        context = Contexts(self.settings, self.connection).get(self.project_id)
        version = context.model_version
        dispatch.stamp_model_version(self.connection, fanout.request_id, version)
        if self.on_context:
            self.on_context(context.labeler)
        # Every job ends with an outcome per task (a job that fails for good reports its tasks failed), so
        # this ends once the workers are done; only while no worker listens at all does it give up.
        watch = WorkerWatch(self.queue, self.settings.worker_wait)
        received: set[int] = set()
        for message in dispatch.follow(
            self.connection, fanout.request_id, len(tasks), lambda: 0 if watch.gave_up() else 1
        ):
            received.add(int(message["task"]))
            yield keys[int(message["task"])], outcome_of(message)
        missing = [index for index in tasks if index not in received]
        if missing:
            from backend.model.labeler import Outcome

            self._cancel(job_ids)
            detail = (
                f"no rq worker listened on queue {self.queue.name!r} for {self.settings.worker_wait} s "
                "(WORKER_WAIT): start `fewshot-prelabel worker` with the same REDIS_URL"
            )
            for index in missing:
                yield keys[index], Outcome(error="no_worker", detail=detail, model_version=version)

    def _cancel(self, job_ids: list[str]) -> None:
        """Drop this file's jobs from the queue: they belong to a project that is about to be forgotten."""
        for job in Job.fetch_many(job_ids, connection=self.connection):
            if job is not None and job.get_status(refresh=False) in ("queued", "scheduled", "deferred"):
                job.cancel()

    def close(self) -> None:
        store.forget_project(self.connection, self.project_id)


def outcome_of(message: dict) -> Outcome:
    from backend.model.labeler import Outcome

    ok = failures.is_prediction(message)
    labels = tuple(message.get("labels") or ()) if ok else None
    return Outcome(
        labels=labels,
        values=message.get("answer") if ok else None,
        score=message.get("score"),
        error=None if ok else (message.get("error") or "failed"),
        detail=message.get("detail", ""),
        requests=int(message.get("requests") or 0),
        prompt_tokens=int(message.get("prompt_tokens") or 0),
        completion_tokens=int(message.get("completion_tokens") or 0),
        model_version=message.get("model_version", ""),
        cached=bool(message.get("cached")),
    )
