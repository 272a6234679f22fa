"""Write-back: predictions from the outbox into Label Studio, each (task, model_version) once, or listed failed.

A flusher reads the outbox in batches. For each (task, version) it takes a claim (claims.py), looks in Label
Studio for a prediction of that version, creates the missing ones in one bulk call, and only then removes the
rows: a row leaves the outbox once Label Studio holds its prediction, or once it is recorded as failed.

- Killed at any step, a flusher leaves its rows in the outbox and its claims expire; whoever flushes next
  looks in Label Studio first, so a write that landed is not made twice and one that did not is made.
- Several flushers at once split the rows by claims; none removes a row it did not deliver.
- Label Studio answering 5xx or not answering in time may still have applied the write: the claims are kept
  for their whole lifetime before anyone looks again. A 4xx that names the batch (a deleted task) is split
  until the rows it refuses are found; those are listed as failed, the rest are written.
- Predictions Label Studio keeps failing to take (down, refusing the token) are retried for
  WRITE_BACK_TIMEOUT seconds, then listed as failed with the last error; a later prelabel finds them again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from backend.pipeline import failures, outbox
from backend.pipeline.claims import DONE, Claims, claim_ttl
from backend.pipeline.runs import mark
from backend.studio.client import Studio, StudioError

if TYPE_CHECKING:
    from backend.settings import Settings

log = logging.getLogger(__name__)

RETRY_S = 5.0  # a flush that left rows (held by another deliverer, or failing) runs again after at least this
REFUSED = (
    "Label Studio did not store it: the prediction does not fit the project's labeling config (its server log says why)"
)


@dataclass
class FlushReport:
    """What one flush did; rows it left wait for the next flush, `retry_in` seconds from now at the earliest."""

    written: int = 0  # created in Label Studio now
    found: int = 0  # Label Studio held them already (written by /predict, or by a flusher that died)
    failed: int = 0  # listed as failed: refused, or failing past WRITE_BACK_TIMEOUT
    held: int = 0  # claimed by another deliverer: left for later
    failing: int = 0  # the write failed; tried again later
    more: bool = False  # stopped at its time budget with rows unread
    retry_in: float = 0.0

    def later(self, seconds: float) -> None:
        self.retry_in = max(self.retry_in, seconds)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class _Failed(Exception):
    """A write that failed for the whole batch; `maybe_applied` when Label Studio may have taken it anyway."""

    def __init__(self, detail: str, maybe_applied: bool):
        super().__init__(detail)
        self.detail = detail
        self.maybe_applied = maybe_applied


class Flusher:
    """One flush of one project's outbox."""

    def __init__(self, connection: redis.Redis, settings: Settings, project_id: int, open_studio: Callable[[], Studio]):
        self.connection = connection
        self.settings = settings
        self.project_id = project_id
        self.open_studio = open_studio
        self.holder = f"flush:{uuid.uuid4().hex}"
        self.ttl = claim_ttl(settings.studio_timeout)
        self.report = FlushReport()
        self._studio: Studio | None = None

    def flush(self, budget_s: float) -> FlushReport:
        """Deliver rows until the outbox is read through, a write fails, or `budget_s` seconds passed."""
        deadline = time.monotonic() + budget_s
        try:
            for batch in outbox.batches(self.connection, self.project_id):
                if time.monotonic() > deadline:
                    self.report.more = True
                    break
                by_version: dict[str, list[dict]] = {}
                for row in batch:
                    by_version.setdefault(row["model_version"], []).append(row)
                for version, rows in by_version.items():
                    self._version(version, rows)
        except _Failed:
            pass  # Label Studio fails now: the rest of the outbox waits for the next flush
        finally:
            if self._studio is not None:
                self._studio.close()
        if self.report.written or self.report.found or self.report.failed:
            log.info(
                "project %s: write-back %s",
                self.project_id,
                " ".join(f"{k} {v}" for k, v in self.report.as_dict().items() if v),
            )
        return self.report

    @property
    def studio(self) -> Studio:
        if self._studio is None:
            self._studio = self.open_studio()
        return self._studio

    def _version(self, version: str, rows: list[dict]) -> None:
        rows = list({int(r["task"]): r for r in rows}.values())  # a row read twice is one task
        claims = Claims(self.connection, self.project_id, version, self.ttl)
        holders = claims.take([int(r["task"]) for r in rows], self.holder)
        confirmed = [r for r in rows if holders[int(r["task"])] == DONE]
        mine = [r for r in rows if holders[int(r["task"])] == self.holder]
        held = [int(r["task"]) for r in rows if holders[int(r["task"])] not in (DONE, self.holder)]
        if confirmed:
            self._done(claims, confirmed, found=True)
        if held:
            # Held by a live flusher, they are gone in seconds; by a dead one or /predict, at the claims' end.
            # A look every RETRY_S costs one Redis call per batch.
            self.report.held += len(held)
            self.report.later(min(claims.remaining(held), RETRY_S))
        if mine:
            self._deliver(claims, version, mine)

    def _deliver(self, claims: Claims, version: str, rows: list[dict]) -> None:
        tasks = [int(r["task"]) for r in rows]
        try:
            present = self.studio.predicted_task_ids(self.project_id, version, tasks)
            fresh = [r for r in rows if int(r["task"]) not in present]
            stored, refused = self._create(claims, version, fresh)
        except _Claimless:
            self.report.held += len(rows)
            self.report.later(RETRY_S)
            return
        except StudioError as exc:
            self._failed(claims, rows, _Failed(str(exc), maybe_applied=_maybe_applied(exc)))
        except _Failed as exc:
            self._failed(claims, rows, exc)
        self._done(claims, [r for r in rows if int(r["task"]) in present], found=True)
        self._done(claims, [r for r in fresh if int(r["task"]) in stored], found=False)
        if refused:
            self._give_up(claims, [r for r in fresh if int(r["task"]) in refused], refused)

    def _create(self, claims: Claims, version: str, rows: list[dict]) -> tuple[set[int], dict[int, str]]:
        """Create predictions for rows; (tasks Label Studio stored, task -> why it refused it)."""
        if not rows:
            return set(), {}
        tasks = [int(r["task"]) for r in rows]
        # Fencing: write only while every claim is still this flusher's, for a full lifetime from now.
        if not claims.extend(tasks, self.holder):
            raise _Claimless()
        payload = [{k: r[k] for k in ("task", "result", "score", "model_version")} for r in rows]
        try:
            created = self.studio.create_predictions(self.project_id, payload)
        except StudioError as exc:
            if not _names_rows(exc):
                raise _Failed(str(exc), maybe_applied=_maybe_applied(exc)) from None
            if len(rows) == 1:
                return set(), {tasks[0]: f"Label Studio refused it: {exc}"[:300]}
            half = len(rows) // 2  # nothing of a refused batch was stored: find the rows it refuses
            first, second = self._create(claims, version, rows[:half]), self._create(claims, version, rows[half:])
            return first[0] | second[0], {**first[1], **second[1]}
        if created >= len(rows):
            return set(tasks), {}
        # Label Studio 1.23 silently drops predictions that do not fit the config: see which it kept.
        present = self.studio.predicted_task_ids(self.project_id, version, tasks)
        return present & set(tasks), {t: REFUSED for t in tasks if t not in present}

    def _done(self, claims: Claims, rows: list[dict], found: bool) -> None:
        """Label Studio holds these predictions: the rows leave, their runs count them written."""
        if not rows:
            return
        claims.confirm([int(r["task"]) for r in rows])
        outbox.remove(self.connection, self.project_id, rows)
        failures.record(self.connection, self.project_id, rows)  # a task written is no longer a failure
        for run_id, tasks in _by_run(rows).items():
            mark(self.connection, run_id, {t: "written" for t in tasks}, "write")
        if found:
            self.report.found += len(rows)
        else:
            self.report.written += len(rows)

    def _give_up(self, claims: Claims, rows: list[dict], reasons: dict[int, str]) -> None:
        """Rows that will not be written: listed as failed with their reason, and out of the outbox."""
        claims.release([int(r["task"]) for r in rows], self.holder)
        messages = [
            {
                "task": int(r["task"]),
                "result": None,
                "error": "write_back",
                "detail": reasons[int(r["task"])],
                "model_version": r["model_version"],
            }
            for r in rows
        ]
        failures.record(self.connection, self.project_id, messages)
        outbox.remove(self.connection, self.project_id, rows)
        for run_id, tasks in _by_run(rows).items():
            mark(self.connection, run_id, {t: "failed" for t in tasks}, "write")
        self.report.failed += len(rows)
        log.warning(
            "project %s: %d predictions not written back: %s", self.project_id, len(rows), next(iter(reasons.values()))
        )

    def _failed(self, claims: Claims, rows: list[dict], exc: _Failed) -> None:
        """The write failed for the whole batch: retry later, or give up on rows failing for too long."""
        tasks = [int(r["task"]) for r in rows]
        if exc.maybe_applied:
            claims.extend(tasks, self.holder)  # nobody looks before Label Studio is surely done with it
            self.report.later(self.ttl)
        else:
            claims.release(tasks, self.holder)
            self.report.later(RETRY_S)
        since = outbox.failing_since(self.connection, self.project_id, rows, exc.detail)
        expired = [r for r in rows if time.time() - since[outbox.field(r)] >= self.settings.write_back_timeout]
        if expired:
            why = f"Label Studio did not take it for {self.settings.write_back_timeout} s; last: {exc.detail}"
            self._give_up(claims, expired, {int(r["task"]): why[:300] for r in expired})
        self.report.failing += len(rows) - len(expired)
        log.warning(
            "project %s: writing %d predictions back failed (%s); retrying in %.0f s",
            self.project_id,
            len(rows),
            exc.detail[:200],
            self.report.retry_in,
        )
        raise exc


class _Claimless(Exception):
    """Claims expired while this flusher worked (it paused too long): it writes nothing, others will."""


def _by_run(rows: list[dict]) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = {}
    for row in rows:
        if row.get("run"):
            runs.setdefault(row["run"], []).append(int(row["task"]))
    return runs


def _maybe_applied(exc: StudioError) -> bool:
    """No answer, or a server error: Label Studio may have stored the write before failing."""
    return exc.status is None or exc.status >= 500


def _names_rows(exc: StudioError) -> bool:
    """A 4xx about the batch's content (a deleted task): nothing stored, and some row is to blame."""
    return exc.status in (400, 409, 422)
