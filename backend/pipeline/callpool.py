"""A worker process's LLM call slots: one pool of LABEL_CONCURRENCY threads shared by every job it runs.

The jobs of a worker run side by side (worker.py): each hands its requests to this pool, and the worker takes
the next job as soon as a slot would otherwise go idle. The slowest call of one job (a retried answer) then
no longer holds the other slots empty until it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class CallPool:
    """LABEL_CONCURRENCY threads and a count of the work handed to them and not yet done."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="llm")
        self._pending = 0
        self._changed = threading.Condition()

    @property
    def pending(self) -> int:
        """Units of work submitted and not finished (running or waiting for a slot)."""
        return self._pending

    def submit(self, fn: Callable, *args) -> Future:
        with self._changed:
            self._pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait up to `timeout` s until nothing is queued behind the running calls; True when there is room.

        "Room" is no more pending units than slots: the next job is fetched while every slot is still busy,
        so its calls are in the pool (read, keyed) before a slot frees and the slot goes from one call to
        the next without a gap. It holds at most one job's tasks queued, which the small last jobs of a run
        (dispatch.split) keep short at the end.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._pending <= self.size, timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def handed_over() -> None:
    """Tell the worker that the job running in this thread has handed all its calls to the pool.

    Until then the worker takes no further labeling job: a job still building its project's context (the
    first one of a project in this process) has not shown how many slots it will fill, and the worker must
    not hoard jobs that another worker could start at once.
    """
    event = getattr(threading.current_thread(), "handed_over", None)
    if event is not None:
        event.set()
