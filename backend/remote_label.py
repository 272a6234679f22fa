"""The `label` command through the rq workers: a file becomes a short-lived project in Redis that any worker serves."""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import redis
from rq import Queue, Worker

from . import dispatch, store
from .labeler import Outcome
from .labeling.examples import Example
from .projects import demo_from_example, register
from .settings import Settings

FILE_PROJECT_BASE = 2_000_000_000  # far above any Label Studio project id
WAIT_FOR_WORKERS_S = 24 * 3600  # a file run waits for the workers as long as it takes (no write-back)


class WorkerLabeling:
    """Registers the file's config, options and seeds as a project, then labels items through the queue."""

    def __init__(self, settings: Settings, connection: redis.Redis, config: str, examples: list[Example],
                 options: dict):
        self.settings = settings
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=connection)
        self.project_id = FILE_PROJECT_BASE + int(connection.incr(f"{store.PREFIX}:file-project-seq"))
        register(connection, self.project_id, config, options)
        demos = {index: demo_from_example(example, {"id": index}) for index, example in enumerate(examples)}
        store.replace_live_demos(connection, self.project_id, demos)
        store.activate_demos(connection, self.project_id)

    def workers(self) -> int:
        return Worker.count(queue=self.queue)

    def __call__(self, items: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, Outcome]]:
        keys = {}
        tasks = {}
        for index, (key, data) in enumerate(items):
            keys[index], tasks[index] = key, data
        if not tasks:
            return
        request = dispatch.LabelRequest(self.project_id, tasks)
        dispatch.submit(self.connection, self.queue, request, self.settings.chunk_size, self.settings.job_timeout)
        deadline = time.time() + WAIT_FOR_WORKERS_S
        for message in dispatch.stream(self.connection, request.request_id, len(tasks), deadline):
            yield keys[int(message["task"])], outcome_of(message)

    def close(self) -> None:
        store.forget_project(self.connection, self.project_id)


def outcome_of(message: dict) -> Outcome:
    ok = bool(message.get("result"))
    labels = tuple(message.get("labels") or ()) if ok else None
    return Outcome(labels=labels, values=message.get("answer") if ok else None, score=message.get("score"),
                   error=None if ok else (message.get("error") or "failed"), detail=message.get("detail", ""),
                   requests=int(message.get("requests") or 0), prompt_tokens=int(message.get("prompt_tokens") or 0),
                   completion_tokens=int(message.get("completion_tokens") or 0),
                   model_version=message.get("model_version", ""), cached=bool(message.get("cached")))
