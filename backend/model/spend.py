"""Per-project daily spend limits: tokens and estimated USD per UTC day, shared by every worker through Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from backend.costs import estimate_cost
from backend.state.store import PREFIX

KEY_TTL = 3 * 24 * 3600


class BudgetReached(Exception):
    """The project's daily budget is spent: no new LLM call until the next UTC day."""


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


class SpendGuard:
    """Checks before every LLM call and adds what each call cost after it."""

    def __init__(
        self,
        connection: redis.Redis,
        project_id: int,
        tokens_per_day: int,
        usd_per_day: float,
        model: str,
        prices: dict,
    ):
        self.connection = connection
        self.project_id = project_id
        self.tokens_per_day = tokens_per_day
        self.usd_per_day = usd_per_day
        self.model = model
        self.prices = prices

    @property
    def enabled(self) -> bool:
        return bool(self.tokens_per_day or self.usd_per_day)

    def _key(self, day: str | None = None) -> str:
        return f"{PREFIX}:spend:{self.project_id}:{day or _today()}"

    def spent(self) -> tuple[int, float]:
        tokens, usd = self.connection.hmget(self._key(), ["tokens", "usd"])
        return int(tokens or 0), float(usd or 0.0)

    def check(self) -> None:
        """BudgetReached, with what was spent and how to change it, once a limit is reached."""
        if not self.enabled:
            return
        tokens, usd = self.spent()
        if self.tokens_per_day and tokens >= self.tokens_per_day:
            raise BudgetReached(
                f"the daily token budget of project {self.project_id} is spent ({tokens} of "
                f"{self.tokens_per_day} tokens, BUDGET_TOKENS_PER_DAY); no new LLM calls until "
                "00:00 UTC"
            )
        if self.usd_per_day and usd >= self.usd_per_day:
            raise BudgetReached(
                f"the daily budget of project {self.project_id} is spent (${usd:.4f} of "
                f"${self.usd_per_day:.4f}, BUDGET_USD_PER_DAY); no new LLM calls until 00:00 UTC"
            )

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        cost = estimate_cost(self.model, prompt_tokens, completion_tokens, self.prices) or 0.0
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(self._key(), "tokens", prompt_tokens + completion_tokens)
            pipe.hincrbyfloat(self._key(), "usd", cost)
            pipe.expire(self._key(), KEY_TTL)
            pipe.execute()

    def status(self) -> dict:
        tokens, usd = self.spent()
        reached = (bool(self.tokens_per_day) and tokens >= self.tokens_per_day) or (
            bool(self.usd_per_day) and usd >= self.usd_per_day
        )
        return {
            "day": _today(),
            "tokens": tokens,
            "usd": round(usd, 6),
            "tokens_per_day": self.tokens_per_day,
            "usd_per_day": self.usd_per_day,
            "reached": reached,
        }
