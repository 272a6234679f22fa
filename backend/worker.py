"""The `worker` command: an RQ worker on the backend's queue that keeps its per-process caches between jobs."""

from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from . import store
from .logs import configure_logging
from .settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Run until stopped (or, with burst, until the queue is empty).

    SimpleWorker runs jobs in this process instead of a fork per job, so the LLM client, its connection
    pool and the projects' prompt contexts survive from one job to the next. A worker killed mid-job
    leaves its job in RQ's started registry; the maintenance pass of any live worker re-queues it
    (jobs carry retries) once its heartbeat expires.
    """
    configure_logging(settings)
    connection = store.connect(settings.redis_url)
    if not store.ping(connection):
        log.error("Redis is unreachable at %s: start it or set REDIS_URL", settings.redis_url.split("@")[-1])
        return 1
    queue = Queue(settings.queue_name, connection=connection)
    worker = SimpleWorker([queue], connection=connection, maintenance_interval=settings.worker_maintenance)
    log.info("worker %s listening on queue %r", worker.name, settings.queue_name)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    return 0
