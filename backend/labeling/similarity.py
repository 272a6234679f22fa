"""Nearest neighbours of a query vector among demonstration vectors: cosine top-k and maximal marginal relevance.

Pure functions on numpy arrays, no I/O. Indexes come back most relevant first; equal scores go to the lower index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Vector = np.ndarray[Any, Any] | Sequence[float]
Matrix = np.ndarray[Any, Any] | Sequence[Sequence[float]]


def as_matrix(vectors: Matrix) -> np.ndarray[Any, Any]:
    """vectors as a 2-D float32 array (an empty input gives shape (0, 0))."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.size == 0:
        return matrix if matrix.ndim == 2 else np.zeros((0, 0), dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be a matrix (one row per vector), got shape {matrix.shape}")
    return matrix


def normalize_rows(matrix: Matrix) -> np.ndarray[Any, Any]:
    """Each row scaled to unit length (zero rows stay zero), as a new float32 array."""
    matrix = as_matrix(matrix)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0).astype(np.float32)


def normalize(vector: Vector) -> np.ndarray[Any, Any]:
    vector = np.asarray(vector, dtype=np.float32)
    if vector.ndim != 1:
        raise ValueError(f"a query must be one vector, got shape {vector.shape}")
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def cosine_scores(query: Vector, vectors: Matrix, *, normalized: bool = False) -> np.ndarray[Any, Any]:
    """Cosine similarity of the query with each row; `normalized=True` trusts the rows to be unit length already."""
    matrix = as_matrix(vectors) if normalized else normalize_rows(vectors)
    if len(matrix) == 0:
        return np.zeros(0, dtype=np.float32)
    q = normalize(query)
    if q.shape[0] != matrix.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dimensions, the vectors {matrix.shape[1]}")
    scores: np.ndarray[Any, Any] = matrix @ q
    return scores


def cosine_top_k(query: Vector, vectors: Matrix, k: int, *, normalized: bool = False) -> list[int]:
    """Indexes of the k rows most similar to the query, most similar first; ties in index order."""
    scores = cosine_scores(query, vectors, normalized=normalized)
    if k <= 0 or len(scores) == 0:
        return []
    order = np.argsort(-scores, kind="stable")  # stable: equal scores keep index order
    return [int(i) for i in order[:k]]


def mmr(query: Vector, vectors: Matrix, k: int, lambda_: float = 0.5, *, normalized: bool = False) -> list[int]:
    """Maximal marginal relevance: repeatedly pick argmax of lambda*sim(q, d) - (1-lambda)*max sim(d, chosen).

    lambda_=1 is plain cosine top-k; smaller values trade relevance for diversity. Indexes in pick order
    (the first is the most relevant row); ties go to the lower index.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_!r}")
    matrix = as_matrix(vectors) if normalized else normalize_rows(vectors)
    relevance = cosine_scores(query, matrix, normalized=True).astype(np.float64)
    n = len(relevance)
    k = min(k, n)
    if k <= 0:
        return []
    redundancy = np.full(n, -np.inf)  # max similarity to anything chosen so far
    available = np.ones(n, dtype=bool)
    chosen: list[int] = []
    for _ in range(k):
        penalty = redundancy if chosen else np.zeros(n)
        scores = lambda_ * relevance - (1.0 - lambda_) * penalty
        scores[~available] = -np.inf
        best = int(np.argmax(scores))  # argmax returns the first maximum: the lowest index wins ties
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, (matrix @ matrix[best]).astype(np.float64))
    return chosen
