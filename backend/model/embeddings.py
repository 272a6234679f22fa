"""Embedding vectors of demonstrations and queries: cached in Redis, embedded in batches, used to select demonstrations.

Vectors come from the bundled local model (backend.model.local_embeddings; EMBEDDING_MODEL empty or "local") or from
the LLM server's /v1/embeddings (EMBEDDING_MODEL names a model there). A text is embedded once per embedding
model: its vector is kept in Redis (float32, with a TTL, at most EMBEDDING_CACHE_MAX_ENTRIES of them) under the
model and the sha256 of the text, so every worker and the web process share it. Only workers embed; the web
process reads vectors with `Embedder.cached`, which never embeds.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import redis

from backend.labeling.selection import LOCAL, TFIDF
from backend.labeling.similarity import cosine_top_k, mmr, normalize, normalize_rows
from backend.model import local_embeddings
from backend.state.bounded import put_bounded
from backend.state.store import PREFIX

if TYPE_CHECKING:
    from backend.labeling.examples import Example

VECTOR_TTL = 30 * 24 * 3600  # seconds a cached vector is kept (30 days)
VECTOR_MAX_ENTRIES = 200_000  # default bound of the Redis vector cache (EMBEDDING_CACHE_MAX_ENTRIES)
MEMORY_MAX_ENTRIES = 50_000  # vectors one process keeps without Redis (the `label` and `evaluate` commands)
EMBEDDING_STRATEGIES = ("nearest-k", "mmr-k")
_DTYPE = np.dtype("<f4")  # little-endian float32, the same bytes on every machine
_INDEX = f"{PREFIX}:emb:index"  # sorted set: vector key -> time stored, to drop the oldest past the bound

Vector = np.ndarray  # 1-D float32


class MissingEmbeddings(LookupError):
    """Some texts have no cached vector and this process does not embed (the web process: the workers do)."""

    def __init__(self, missing: int, model: str):
        super().__init__(f"{missing} text(s) have no cached {model!r} embedding and this process does not embed")
        self.missing = missing
        self.model = model


def text_key(model: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{PREFIX}:emb:{model}:{digest}"


class EmbeddingSource(Protocol):
    """What embeds texts: LLMClient (the server's /v1/embeddings) or the local model; (vectors, tokens billed)."""

    def embed(self, texts: list[str], model: str) -> tuple[list, int]: ...


def similarity_model(embedding_model: str) -> str:
    """What nearest-k and mmr-k compare texts with, from EMBEDDING_MODEL: "" and "local" are the bundled local
    model (by its versioned id), "tfidf" is TF-IDF in-process, anything else a model of the LLM server."""
    if embedding_model in ("", LOCAL):
        return local_embeddings.model_id()
    return embedding_model


def is_local(model: str) -> bool:
    return model.startswith(LOCAL + ":")


class VectorCache:
    """Vectors in Redis: one key per (embedding model, sha256 of the text) holding float32 bytes, with a TTL;
    past max_entries the oldest are dropped."""

    def __init__(self, connection: redis.Redis, ttl: int = VECTOR_TTL, max_entries: int = VECTOR_MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.connection = connection
        self.ttl = ttl
        self.max_entries = max_entries

    def get_many(self, model: str, texts: Sequence[str]) -> list[Vector | None]:
        """The cached vector of each text (one MGET), None where there is none."""
        if not texts:
            return []
        values = self.connection.mget([text_key(model, t) for t in texts])
        return [
            np.frombuffer(v, dtype=_DTYPE).astype(np.float32) if isinstance(v, bytes) and v else None for v in values
        ]  # bytes: the client leaves replies undecoded

    def put_many(self, model: str, texts: Sequence[str], vectors: Sequence) -> None:
        """Store vectors (one pipeline); each key gets the TTL, and the oldest go past the bound."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        values = {text_key(model, t): np.asarray(v, dtype=_DTYPE).tobytes() for t, v in zip(texts, vectors)}
        put_bounded(self.connection, _INDEX, values, _same, self.ttl, self.max_entries)

    def size(self) -> int:
        return int(self.connection.zcard(_INDEX))


def _same(key: str) -> str:
    return key


class MemoryVectorCache:
    """The VectorCache interface in this process only (the `label` and `evaluate` commands, without Redis):
    the same keys, the least recently used dropped past max_entries."""

    def __init__(self, max_entries: int = MEMORY_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()  # label_many's threads read while the prefetch writes

    def get_many(self, model: str, texts: Sequence[str]) -> list[Vector | None]:
        keys = [text_key(model, t) for t in texts]
        found = []
        with self._lock:
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                found.append(vector)
        return found

    def put_many(self, model: str, texts: Sequence[str], vectors) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors):
                key = text_key(model, text)
                self._vectors[key] = np.asarray(vector, dtype=_DTYPE)
                self._vectors.move_to_end(key)
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)

    def size(self) -> int:
        return len(self._vectors)


_PROCESS_VECTORS = MemoryVectorCache()


def process_vectors() -> MemoryVectorCache:
    """This process's vectors outside Redis: shared by every Labeler it builds, so evaluate's folds and
    repeated runs embed each text once."""
    return _PROCESS_VECTORS


class Embedder:
    """Vectors of texts: from the cache, else embedded in batches of batch_size by the source and cached.

    A source is an LLMClient (the server's /v1/embeddings) or the local model; without one (the web process)
    the Embedder only reads the cache.
    """

    def __init__(self, source: EmbeddingSource | None, cache: VectorCache, model: str, batch_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if not model or model == TFIDF:
            raise ValueError(f"an embedding model name is required, got {model!r}")
        self.source = source
        self.cache = cache
        self.model = model
        self.batch_size = batch_size

    @property
    def embeds(self) -> bool:
        """True when this Embedder can compute missing vectors (else it only reads the cache)."""
        return self.source is not None

    def vectors(self, texts: Sequence[str]) -> list[Vector]:
        """One vector per text, in order. Texts without a cached vector are embedded (each distinct text once)
        and cached; MissingEmbeddings if some are missing and there is no source; LLMError from the source."""
        found = self.cache.get_many(self.model, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, found) if v is None))  # distinct, first-seen order
        if not missing:
            return found  # type: ignore[return-value]
        if self.source is None:
            raise MissingEmbeddings(len(missing), self.model)
        embedded: dict[str, Vector] = {}
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            vectors, _ = self.source.embed(batch, self.model)
            arrays = [np.asarray(v, dtype=np.float32) for v in vectors]
            self.cache.put_many(self.model, batch, arrays)  # per batch: a later failure keeps what was paid for
            embedded.update(zip(batch, arrays))
        return [v if v is not None else embedded[t] for t, v in zip(texts, found)]

    def cached(self, texts: Sequence[str]) -> list[Vector | None]:
        """Cached vectors only, None where there is none; never embeds."""
        return self.cache.get_many(self.model, texts)


def embedder_for(model: str, client, cache) -> Embedder | None:
    """The Embedder of a similarity model (see similarity_model), None for TF-IDF. A process without an LLM
    client (the web process) gets one that only reads the cache, for the local model too: the workers embed."""
    if model == TFIDF:
        return None
    if client is None:
        return Embedder(None, cache, model)
    return Embedder(local_embeddings.shared() if is_local(model) else client, cache, model)


class EmbeddingSelector:
    """Selector for "nearest-k" (cosine) and "mmr-k" (maximal marginal relevance) over embedding vectors.

    Same interface as backend.labeling.selection.Selector, except that select() needs the query's vector.
    Similarity is measured after removing the demonstrations' mean direction: every text of a project shares
    it (language, register, domain), so it says nothing about which demonstration is closest, yet it
    dominates averaged sentence vectors ("all-but-the-top", Mu & Viswanath 2018; on the selection benchmark
    it adds 0 to 2 points of demonstrations carrying the task's label).
    """

    fixed = False  # every query gets its own demonstrations

    def __init__(self, pool: list[Example], k: int, pool_vectors, strategy: str = "nearest-k", lambda_: float = 0.5):
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
        unit = normalize_rows(pool_vectors) if pool else np.zeros((0, 0), dtype=np.float32)
        # Centred on the pool's mean; with no pool select returns [] before it is used.
        self._mean = unit.mean(axis=0) if pool else np.zeros(0, dtype=np.float32)
        self._matrix = normalize_rows(unit - self._mean) if pool else unit

    def select(self, text: str, vector=None) -> list[Example]:
        """k demonstrations in prompt order: the most similar to the query last."""
        if vector is None:
            raise ValueError(f"{self.strategy} selection needs the query's embedding vector")
        if not self.pool:
            return []
        query = normalize(normalize(vector) - self._mean)
        if self.strategy == "mmr-k":
            ranked = mmr(query, self._matrix, self.k, self.lambda_, normalized=True)
        else:
            ranked = cosine_top_k(query, self._matrix, self.k, normalized=True)
        # Most similar last: the demonstration next to the query weighs most with in-context learners.
        return [self.pool[i] for i in reversed(ranked)]
