"""Which demonstrations go into a task's prompt: all, the first k, k per label, or the k nearest (TF-IDF here;
embedding vectors in backend.model.embeddings). "auto" is resolved per demonstration set (labeling.auto_selection)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.labeling.examples import Example

STRATEGIES = ("auto", "all", "first-k", "balanced-k", "nearest-k", "mmr-k")
SIMILARITY_STRATEGIES = ("nearest-k", "mmr-k")  # per-query choices; mmr-k needs embeddings
# Similarity backends that are not a model of the LLM server (EMBEDDING_MODEL values).
LOCAL = "local"  # the bundled local embedding model (backend.model.local_embeddings), also what an empty value means
TFIDF = "tfidf"  # TF-IDF cosine in-process (TfidfIndex)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Selection:
    """A selection strategy and its k (k is ignored by `all`)."""

    strategy: str = "all"
    k: int = 8

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"selection must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k!r}")

    def describe(self) -> str:
        return self.strategy if self.strategy in ("all", "auto") else f"{self.strategy}:{self.k}"


class Selector:
    """Chooses demonstrations for each query from a fixed, ordered pool."""

    def __init__(self, pool: list[Example], selection: Selection):
        self.pool = pool
        self.selection = selection
        if selection.strategy == "auto":
            raise ValueError("selection auto is resolved per demonstration set first (labeling.auto_selection)")
        self._fixed = self._fixed_choice()
        if selection.strategy == "mmr-k":
            raise ValueError(
                "mmr-k needs embedding vectors, not TF-IDF: leave EMBEDDING_MODEL empty (the local "
                "model) or name an embedding model"
            )
        self._index = TfidfIndex([e.text for e in pool]) if selection.strategy == "nearest-k" else None

    @property
    def fixed(self) -> bool:
        """True when every query gets the same demonstrations (the prompt prefix is then cacheable)."""
        return self._fixed is not None

    def select(self, text: str, vector: Any = None) -> list[Example]:
        """The demonstrations for one query (`vector` is for selectors that rank by embeddings)."""
        if self._fixed is not None:
            return self._fixed
        if self._index is None:  # the constructor builds one or the other
            raise ValueError(f"selection {self.selection.describe()} has neither a fixed choice nor an index")
        ranked = self._index.nearest(text, self.selection.k)
        # Most similar last: the demonstration next to the query weighs most with in-context learners.
        return [self.pool[i] for i in reversed(ranked)]

    def _fixed_choice(self) -> list[Example] | None:
        strategy, k = self.selection.strategy, self.selection.k
        if strategy == "all":
            return list(self.pool)
        if strategy == "first-k":
            return self.pool[:k]
        if strategy == "balanced-k":
            return balanced(self.pool, k)
        return None


def balanced(pool: list[Example], k: int) -> list[Example]:
    """Up to k demonstrations per label, in pool order; rare labels keep what they have."""
    taken: Counter[tuple[str, ...]] = Counter()
    chosen = []
    for example in pool:
        key = example.labels
        if taken[key] < k:
            taken[key] += 1
            chosen.append(example)
    return chosen


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class TfidfIndex:
    """In-process TF-IDF cosine similarity: the no-network nearest-neighbour search."""

    def __init__(self, texts: list[str]):
        counts = [Counter(words(t)) for t in texts]
        document_frequency = Counter(w for c in counts for w in c)
        n = len(texts)
        self._idf = {w: math.log((1 + n) / (1 + df)) + 1.0 for w, df in document_frequency.items()}
        self._vectors = [self._vector(c) for c in counts]
        self._postings: dict[str, list[int]] = {}
        for i, vector in enumerate(self._vectors):
            for w in vector:
                self._postings.setdefault(w, []).append(i)

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        weights = {w: (1 + math.log(c)) * self._idf.get(w, 0.0) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        return {w: v / norm for w, v in weights.items() if v}

    def scores(self, text: str) -> dict[int, float]:
        query = self._vector(Counter(words(text)))
        scores: dict[int, float] = {}
        for w, weight in query.items():
            for i in self._postings.get(w, ()):
                scores[i] = scores.get(i, 0.0) + weight * self._vectors[i][w]
        return scores

    def nearest(self, text: str, k: int) -> list[int]:
        """Indexes of the k most similar texts, most similar first; ties and non-matches in pool order."""
        scores = self.scores(text)
        order = sorted(range(len(self._vectors)), key=lambda i: (-scores.get(i, 0.0), i))
        return order[:k]
