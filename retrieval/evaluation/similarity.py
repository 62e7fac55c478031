"""The four pair similarities of sentence-transformers' evaluators, in float64 numpy.

``euclidean`` and ``manhattan`` are negated distances, so for every similarity higher means
closer (and a threshold reads "similar when the score is at least t").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-12)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.linalg.norm(a - b, axis=1)


def _manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.abs(a - b).sum(axis=1)


# name -> f(a [n, d], b [n, d]) -> [n]: cos(a_i, b_i), a_i . b_i, -||a_i - b_i||_2, -||a_i - b_i||_1
SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": _cosine,
    "dot": _dot,
    "euclidean": _euclidean,
    "manhattan": _manhattan,
}


def pair_similarities(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Every similarity of ``SIMILARITIES`` between rows ``a[i]`` and ``b[i]``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"pair similarities need two [n, d] arrays, got {a.shape} and {b.shape}")
    return {name: fn(a, b) for name, fn in SIMILARITIES.items()}
