"""Claims in Redis: who may deliver a (task, model_version) to Label Studio, so that it gets one prediction.

Two paths deliver predictions: /predict answers Label Studio, which stores what it receives, and the
write-back creates predictions through the API. Before delivering, each takes a claim per task:

- a flusher's claim holds "flush:<token>" for a limited time (CLAIM_FACTOR x the Label Studio timeout:
  longer than its existence check and write can take, and longer than Label Studio may still be applying
  a write whose answer was lost). Before each write it checks that it still holds every claim and extends
  them (a fencing check): a flusher that paused past its claims writes nothing;
- once Label Studio confirmed the prediction, the claim becomes "done" for a while, so rows pushed again
  (a retried job) are dropped without another API call;
- /predict holds "predict:<request>": other /predict calls may answer the same task (Label Studio's own
  retrieves race the same way), a flusher may not until the claim expires and it has looked in Label Studio.

A claim that expires is never the end of a row: the row stays in the outbox until Label Studio holds the
prediction, and the next flusher that wins the claim looks there before writing.
"""

from __future__ import annotations

import redis

from backend.state.redis_replies import text
from backend.state.store import PREFIX

CLAIM_FACTOR = 4  # claim lifetime in Label Studio timeouts
DONE = "done"
_SCRIPT_TAKE = """
local ttl, holder, shared = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current then
    redis.call('SET', key, holder, 'PX', ttl)
    current = holder
  elseif shared ~= '' and string.sub(current, 1, #shared) == shared then
    current = holder
  end
  out[i] = current
end
return out
"""
# Extend every claim `holder` still holds; returns how many it no longer holds (0: all still its own).
_SCRIPT_EXTEND = """
local lost = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2] then redis.call('PEXPIRE', key, ARGV[1]) else lost = lost + 1 end
end
return lost
"""
# Set claims `holder` holds (or any, with ARGV[3] = '1') to a new value.
_SCRIPT_SWAP = """
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[2] or ARGV[3] == '1' then
    if ARGV[1] == '' then redis.call('DEL', key) else redis.call('SET', key, ARGV[1], 'PX', ARGV[4]) end
  end
end
return 1
"""


def claim_key(project_id: int, model_version: str, task_id: int) -> str:
    return f"{PREFIX}:claim:{project_id}:{model_version}:{task_id}"


class Claims:
    """Claims of one project and model_version; `ttl` in seconds."""

    def __init__(self, connection: redis.Redis, project_id: int, model_version: str, ttl: float):
        self.connection = connection
        self.project_id = project_id
        self.model_version = model_version
        self.ttl_ms = max(1, int(ttl * 1000))
        self._take = connection.register_script(_SCRIPT_TAKE)
        self._extend = connection.register_script(_SCRIPT_EXTEND)
        self._swap_script = connection.register_script(_SCRIPT_SWAP)

    def _keys(self, task_ids) -> list[str]:
        return [claim_key(self.project_id, self.model_version, t) for t in task_ids]

    def take(self, task_ids: list[int], holder: str) -> dict[int, str]:
        """Claim each free task for holder; task -> its holder afterwards (holder itself where won).

        A /predict holder ("predict:...") also shares tasks held by another /predict.
        """
        if not task_ids:
            return {}
        shared = "predict:" if holder.startswith("predict:") else ""
        holders = self._take(keys=self._keys(task_ids), args=[self.ttl_ms, holder, shared])
        return {t: text(h) for t, h in zip(task_ids, holders)}

    def extend(self, task_ids: list[int], holder: str, ttl: float | None = None) -> bool:
        """Extend holder's claims (for `ttl` s, else the claim lifetime); False if any was lost meanwhile."""
        if not task_ids:
            return True
        ttl_ms = self.ttl_ms if ttl is None else max(1, int(ttl * 1000))
        lost = self._extend(keys=self._keys(task_ids), args=[ttl_ms, holder])
        return int(lost) == 0

    def confirm(self, task_ids: list[int]) -> None:
        """Label Studio holds these predictions: mark them done, whoever held the claim."""
        self._swap(task_ids, DONE, "", force=True)

    def release(self, task_ids: list[int], holder: str) -> None:
        """Give back holder's claims after a write that Label Studio certainly did not apply."""
        self._swap(task_ids, "", holder)

    def _swap(self, task_ids: list[int], value: str, holder: str, force: bool = False) -> None:
        if task_ids:
            self._swap_script(keys=self._keys(task_ids), args=[value, holder, "1" if force else "0", self.ttl_ms])

    def remaining(self, task_ids: list[int]) -> float:
        """Seconds until the last of these claims expires (0 when none is held)."""
        if not task_ids:
            return 0.0
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self._keys(task_ids):
                pipe.pttl(key)
            return max([0, *pipe.execute()]) / 1000


def claim_ttl(studio_timeout: float) -> float:
    """How long a claim lasts: past any write a flusher may still have in flight at Label Studio."""
    return CLAIM_FACTOR * studio_timeout
