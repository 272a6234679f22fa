"""`fewshot-prelabel worker` with one fault built in, chosen by FSP_CHAOS (test equipment, never the product).

- kill:after-claim    SIGKILL itself when a flush, holding its claims, first asks Label Studio anything
- kill:during-write   SIGKILL itself while its bulk write is at Label Studio (sent, answer not read)
- kill:after-write    SIGKILL itself after Label Studio confirmed a write, before the rows leave the outbox
- raise:label         every labeling job raises

Run as `python -m tests.chaos_worker`; the rest of the worker is the real one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from backend.pipeline import jobs
from backend.studio.client import Studio


def _die() -> None:
    sys.stderr.write(f"chaos: SIGKILL at {os.environ['FSP_CHAOS']}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(chaos: str) -> None:
    if chaos == "kill:after-claim":
        real_check = Studio.predicted_task_ids

        def check(self, *args, **kwargs):
            _die()
            return real_check(self, *args, **kwargs)

        Studio.predicted_task_ids = check
    elif chaos == "kill:during-write":
        real_write = Studio.create_predictions

        def write(self, *args, **kwargs):
            threading.Thread(target=real_write, args=(self, *args), kwargs=kwargs, daemon=True).start()
            time.sleep(0.5)  # the request is at Label Studio (the test's proxy holds its answer)
            _die()

        Studio.create_predictions = write
    elif chaos == "kill:after-write":
        from backend.pipeline import writeback

        real_done = writeback.Flusher._done

        def done(self, claims, rows, found):
            if rows and not found:
                _die()
            return real_done(self, claims, rows, found)

        writeback.Flusher._done = done
    elif chaos == "raise:label":

        def label_chunk(*args, **kwargs):
            raise RuntimeError("chaos: this labeling job raises every time")

        jobs.label_chunk = label_chunk
    else:
        raise SystemExit(f"unknown FSP_CHAOS {chaos!r}")


if __name__ == "__main__":
    from backend.commands.cli import main

    install(os.environ["FSP_CHAOS"])
    sys.exit(main(["worker"]))
