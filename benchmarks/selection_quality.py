"""The model-free measure of demonstration selection: do the demonstrations a prompt gets carry the task's label?

For each task: the share of its chosen demonstrations that carry one of the task's true labels, and whether
any does (the prompt can show the model the right answer at all). Averaged over tasks. `chance` gives the
same figures for k demonstrations drawn at random from the pool, the floor every method should clear.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import comb


@dataclass
class Quality:
    """Running averages over tasks of (share of chosen demonstrations with the true label, covered)."""

    tasks: int = 0
    share_sum: float = 0.0
    covered: int = 0

    def add(self, chosen: Sequence[Iterable[str]], truth: Iterable[str]) -> None:
        """One task: the label sets of its chosen demonstrations, and its own true labels."""
        truth = set(truth)
        hits = [bool(truth & set(labels)) for labels in chosen]
        self.tasks += 1
        self.share_sum += sum(hits) / len(hits) if hits else 0.0
        self.covered += any(hits)

    def add_expected(self, share: float, covered: float) -> None:
        self.tasks += 1
        self.share_sum += share
        self.covered += covered

    @property
    def share(self) -> float:
        return self.share_sum / self.tasks if self.tasks else 0.0

    @property
    def coverage(self) -> float:
        return self.covered / self.tasks if self.tasks else 0.0


def chance(pool: Sequence[Iterable[str]], truth: Iterable[str], k: int) -> tuple[float, float]:
    """Expected (share, covered) for k demonstrations drawn at random without replacement from the pool."""
    truth = set(truth)
    n = len(pool)
    m = sum(1 for labels in pool if truth & set(labels))
    k = min(k, n)
    if not n or not k:
        return 0.0, 0.0
    return m / n, 1.0 - comb(n - m, k) / comb(n, k)
