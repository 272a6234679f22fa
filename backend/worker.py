"""The `worker` command: an RQ worker on the backend's queue that keeps its per-process caches between jobs."""

from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from . import store
from .logs import configure_logging
from .settings import Settings

log = logging.getLogger(__name__)


# An idle worker blocks in dequeue for worker_ttl - 15 s and runs maintenance (the re-queueing of jobs
# abandoned by killed workers) only between dequeues: a short TTL keeps that check frequent.
WORKER_TTL = 30
HEARTBEAT_SLACK_S = 15


class FewshotWorker(SimpleWorker):
    """SimpleWorker whose job heartbeat lasts the job's timeout plus a short slack instead of a minute.

    A job in this process cannot outlive its timeout (the death penalty stops it), so once that
    heartbeat expires the job's worker is dead and maintenance may re-queue the job at once.
    """

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        if job.timeout is None or job.timeout < 0:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout) + HEARTBEAT_SLACK_S


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
    worker = FewshotWorker([queue], connection=connection, maintenance_interval=settings.worker_maintenance,
                           worker_ttl=WORKER_TTL)
    log.info("worker %s listening on queue %r", worker.name, settings.queue_name)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    return 0
