"""Embedding vectors of demonstrations and queries: cached in Redis, embedded in batches, used to select demonstrations.

A text is embedded once per embedding model: its vector is kept in Redis (float32, with a TTL) under the model
and the sha256 of the text, so every worker and the web process share it. Only workers embed; the web process
reads vectors with `Embedder.cached`, which never touches the network.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import redis

from .labeling.examples import Example
from .labeling.similarity import cosine_top_k, mmr, normalize, normalize_rows
from .llm import LLMClient
from .store import PREFIX

VECTOR_TTL = 30 * 24 * 3600  # seconds a cached vector is kept (30 days)
EMBEDDING_STRATEGIES = ("nearest-k", "mmr-k")
_DTYPE = np.dtype("<f4")  # little-endian float32, the same bytes on every machine

Vector = np.ndarray  # 1-D float32


class MissingEmbeddings(LookupError):
    """Some texts have no cached vector and there is no client to embed them with."""

    def __init__(self, missing: int, model: str):
        super().__init__(f"{missing} text(s) have no cached {model!r} embedding and this process does not embed")
        self.missing = missing
        self.model = model


def text_key(model: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{PREFIX}:emb:{model}:{digest}"


class VectorCache:
    """Vectors in Redis: one key per (embedding model, sha256 of the text) holding float32 bytes, with a TTL."""

    def __init__(self, connection: redis.Redis, ttl: int = VECTOR_TTL):
        self.connection = connection
        self.ttl = ttl

    def get_many(self, model: str, texts: Sequence[str]) -> list[Vector | None]:
        """The cached vector of each text (one MGET), None where there is none."""
        if not texts:
            return []
        values = self.connection.mget([text_key(model, t) for t in texts])
        return [np.frombuffer(v, dtype=_DTYPE).astype(np.float32) if v else None for v in values]

    def put_many(self, model: str, texts: Sequence[str], vectors: Sequence) -> None:
        """Store vectors (one pipeline); each key gets the TTL."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if not texts:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            for text, vector in zip(texts, vectors):
                pipe.set(text_key(model, text), np.asarray(vector, dtype=_DTYPE).tobytes(), ex=self.ttl)
            pipe.execute()


class MemoryVectorCache:
    """The VectorCache interface in this process only, for the `label` command without Redis."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str], Vector] = {}

    def get_many(self, model: str, texts: Sequence[str]) -> list[Vector | None]:
        return [self._vectors.get((model, t)) for t in texts]

    def put_many(self, model: str, texts: Sequence[str], vectors) -> None:
        for text, vector in zip(texts, vectors):
            self._vectors[(model, text)] = np.asarray(vector, dtype=_DTYPE)


class Embedder:
    """Vectors of texts: from the cache, else embedded in batches of batch_size through the client and cached."""

    def __init__(self, client: LLMClient | None, cache: VectorCache, model: str, batch_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if not model:
            raise ValueError("an embedding model name is required")
        self.client = client
        self.cache = cache
        self.model = model
        self.batch_size = batch_size

    def vectors(self, texts: Sequence[str]) -> list[Vector]:
        """One vector per text, in order. Texts without a cached vector are embedded (each distinct text once)
        and cached; MissingEmbeddings if some are missing and there is no client; LLMError from the client."""
        found = self.cache.get_many(self.model, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, found) if v is None))  # distinct, first-seen order
        if not missing:
            return found  # type: ignore[return-value]
        if self.client is None:
            raise MissingEmbeddings(len(missing), self.model)
        embedded: dict[str, Vector] = {}
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            vectors, _ = self.client.embed(batch, self.model)
            arrays = [np.asarray(v, dtype=np.float32) for v in vectors]
            self.cache.put_many(self.model, batch, arrays)  # per batch: a later failure keeps what was paid for
            embedded.update(zip(batch, arrays))
        return [v if v is not None else embedded[t] for t, v in zip(texts, found)]

    def cached(self, texts: Sequence[str]) -> list[Vector | None]:
        """Cached vectors only, None where there is none; never calls the network."""
        return self.cache.get_many(self.model, texts)


class EmbeddingSelector:
    """Selector for "nearest-k" (cosine) and "mmr-k" (maximal marginal relevance) over embedding vectors.

    Same interface as backend.labeling.selection.Selector, except that select() needs the query's vector.
    """

    fixed = False  # every query gets its own demonstrations

    def __init__(self, pool: list[Example], k: int, pool_vectors, strategy: str = "nearest-k",
                 lambda_: float = 0.5):
        if strategy not in EMBEDDING_STRATEGIES:
            raise ValueError(f"embedding selection must be one of {list(EMBEDDING_STRATEGIES)}, got {strategy!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k!r}")
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_!r}")
        if len(pool_vectors) != len(pool):
            raise ValueError(f"{len(pool)} demonstrations but {len(pool_vectors)} vectors")
        if any(v is None for v in pool_vectors):
            raise ValueError("every demonstration needs a vector (some are None: not embedded yet)")
        self.pool = pool
        self.k = k
        self.strategy = strategy
        self.lambda_ = lambda_
        self._matrix = normalize_rows(pool_vectors) if pool else np.zeros((0, 0), dtype=np.float32)

    def select(self, text: str, vector=None) -> list[Example]:
        """k demonstrations in prompt order: the most similar to the query last."""
        if vector is None:
            raise ValueError(f"{self.strategy} selection needs the query's embedding vector")
        if not self.pool:
            return []
        query = normalize(vector)
        if self.strategy == "mmr-k":
            ranked = mmr(query, self._matrix, self.k, self.lambda_, normalized=True)
        else:
            ranked = cosine_top_k(query, self._matrix, self.k, normalized=True)
        # Most similar last: the demonstration next to the query weighs most with in-context learners.
        return [self.pool[i] for i in reversed(ranked)]
