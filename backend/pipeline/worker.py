"""The `worker` command: an RQ worker on the backend's queue that runs its jobs side by side, so its
LABEL_CONCURRENCY call slots stay busy across job boundaries, and keeps its per-process caches between jobs."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus

from backend.logs import configure_logging
from backend.pipeline.waiting import ALIVE_TTL, WORKER_PREFIX, alive_key
from backend.settings import Settings, redacted
from backend.state import store

log = logging.getLogger(__name__)


# An idle worker blocks in dequeue for worker_ttl - 15 s and runs maintenance (the re-queueing of jobs
# abandoned by killed workers) only between dequeues: a short TTL keeps that check frequent, and a block
# shorter than the connection's socket timeout (store.connect: 10 s) does not end in a timeout error.
WORKER_TTL = 20
HEARTBEAT_SLACK_S = 15
MAX_JOBS_AT_ONCE = 64  # a bound on job threads however the call slots are used (flushes use none)
# The labeling job by its dotted path; backend.jobs.label_tasks is its name in jobs queued before the packages.
LABEL_JOBS = ("backend.pipeline.jobs.label_tasks", "backend.jobs.label_tasks")
ROOM_POLL_S = 2.0  # while every slot is taken the worker waits for room, heartbeating this often


PR_SET_PDEATHSIG = 1  # linux/prctl.h


class FewshotScheduler(RQScheduler):
    """rq's scheduler process (it enqueues delayed and retried jobs), stopped when its worker dies.

    rq forks it and stops it only from the worker's clean shutdown: after a SIGKILL of the worker it went on
    under PID 1, and a supervisor that restarts workers would pile such orphans up.
    """

    def start(self):
        self._worker_pid = os.getpid()  # start() runs in the worker; work() in the forked scheduler
        return super().start()

    def work(self):
        die_with_parent(self._worker_pid)
        super().work()


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when `parent` dies (rq's scheduler stops on SIGTERM and releases its locks)."""
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0:
            if os.getppid() != parent:  # it died before the request took effect
                os.kill(os.getpid(), signal.SIGTERM)
            return
    except (OSError, AttributeError):
        pass  # not Linux: watch the parent instead

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-worker", daemon=True).start()


class JobThread(threading.Thread):
    """The thread one job runs in; callpool.handed_over() sets its event once the job's calls are in the pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed_over = threading.Event()


class FewshotWorker(SimpleWorker):
    """SimpleWorker that runs its jobs side by side in threads and feeds its call slots continuously.

    A job is taken from the queue as soon as nothing waits behind the calls running in the process's call
    pool (callpool.CallPool, LABEL_CONCURRENCY slots), and runs in its own thread with rq's whole bookkeeping (its
    own execution and heartbeat, retries, failure callback): the tail of one job (a retried answer) runs
    while the next job's calls already fill the other slots. Each job keeps its own timeout (rq's
    thread-based death penalty) and its heartbeat lasts that timeout plus a short slack instead of a
    minute: once it expires the job's worker is dead and maintenance may re-queue the job at once.
    Maintenance also schedules a flush for any outbox left without one, and a thread keeps an alive key
    that lets prelabel and /status tell a running job from one whose worker stopped.
    """

    death_penalty_class = TimerDeathPenalty  # SIGALRM reaches only the main thread; jobs run in others

    def __init__(self, *args, settings: Settings, calls=None, **kwargs):
        kwargs.setdefault("name", f"{WORKER_PREFIX}{uuid.uuid4().hex}")
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.calls = calls  # the process's call pool (None: jobs run one at a time, as in a plain SimpleWorker)
        self._jobs: set[threading.Thread] = set()
        self._jobs_changed = threading.Condition()
        self._cold = False

    def execute_job(self, job, queue):
        """Start the job in its own thread, then return once the process has room for another job."""
        if self.calls is None:
            return super().execute_job(job, queue)
        execution = self.prepare_execution(job)
        thread = JobThread(target=self._perform, args=(job, queue, execution), name=f"job-{job.id}", daemon=True)
        with self._jobs_changed:
            self._jobs.add(thread)
        thread.start()
        if job.func_name in LABEL_JOBS:
            # Its calls are not in the pool yet: wait for them, or the free slots would draw more jobs.
            while not thread.handed_over.wait(ROOM_POLL_S) and thread.is_alive():
                self.heartbeat()
        self._wait_for_room()

    def _perform(self, job, queue, execution) -> None:
        try:
            self.perform_job(job, queue, execution)
        finally:
            current = threading.current_thread()
            if isinstance(current, JobThread):
                current.handed_over.set()  # ended without handing calls over: no wait for it
            with self._jobs_changed:
                self._jobs.discard(threading.current_thread())
                if not self._jobs:
                    self.set_state(WorkerStatus.IDLE)
                self._jobs_changed.notify_all()

    def _wait_for_room(self) -> None:
        """Block until a call slot has nothing queued behind it (and the job threads are below their bound)."""
        while not self._stop_requested:
            with self._jobs_changed:
                if len(self._jobs) >= MAX_JOBS_AT_ONCE:
                    self._jobs_changed.wait(ROOM_POLL_S)
                    self.heartbeat()
                    continue
            if self.calls.wait_for_room(ROOM_POLL_S):
                return
            self.heartbeat()  # the worker's key outlives a long wait

    def running_jobs(self) -> int:
        with self._jobs_changed:
            return len(self._jobs)

    def _shutdown(self):
        """Warm shutdown: stop taking jobs, let the running ones finish (rq's own checks one job's state)."""
        if self.running_jobs():
            self._stop_requested = True
            self.set_shutdown_requested_date()
            if self.scheduler:
                self.stop_scheduler()
            return
        raise StopRequested()

    def request_force_stop(self, signum, frame):
        self._cold = True
        return super().request_force_stop(signum, frame)

    def teardown(self):
        if not self._cold:
            with self._jobs_changed:
                if self._jobs:
                    log.info("worker %s: waiting for %d running jobs before stopping", self.name, len(self._jobs))
                self._jobs_changed.wait_for(lambda: not self._jobs or self._cold)
        super().teardown()

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        from backend.pipeline.jobs import sweep_outboxes  # jobs imports the labeling stack; workers load it anyway

        try:
            if swept := sweep_outboxes(self.connection, self.settings):
                log.info("scheduled a write-back flush for projects %s (their outbox had none pending)", swept)
        except redis.RedisError as exc:
            log.warning("write-back sweep skipped: %s", exc)

    def keep_alive(self) -> None:
        """Refresh this worker's alive key from a thread, as long as the process lives."""

        def beat() -> None:
            while True:
                try:
                    self.connection.set(alive_key(self.name), os.getpid(), ex=ALIVE_TTL)
                except redis.RedisError:
                    pass  # Redis restarting: the key comes back with it
                time.sleep(ALIVE_TTL / 3)

        threading.Thread(target=beat, name="alive", daemon=True).start()

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        if job.timeout is None or job.timeout < 0:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout) + HEARTBEAT_SLACK_S

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ):
        """rq's own, with a scheduler that dies with this worker."""
        self.scheduler = FewshotScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return  # another worker's scheduler serves these queues; maintenance tries again later
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()


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
        log.error("Redis is unreachable at %s (REDIS_URL): start it or set REDIS_URL", redacted(settings.redis_url))
        return 2  # a usage error, as every command's
    from backend.pipeline.jobs import preload  # the labeling stack, loaded once per worker before its first job

    started = time.monotonic()
    state = preload()
    log.info("worker ready in %.1f s (labeling stack, LLM client, token counter)", time.monotonic() - started)
    queue = Queue(settings.queue_name, connection=connection)
    worker = FewshotWorker(
        [queue],
        connection=connection,
        maintenance_interval=settings.worker_maintenance,
        worker_ttl=WORKER_TTL,
        settings=settings,
        calls=state.calls,
    )
    worker.keep_alive()
    log.info(
        "worker %s listening on queue %r with %d call slots", worker.name, settings.queue_name, settings.concurrency
    )
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    return 0
