"""Encoding both sides of sentence pairs with a dual encoder, each distinct sentence once.

Holds only the encoding; similarities and metrics live in similarity.py and the evaluators.
"""

from __future__ import annotations

import numpy as np

from retrieval.encoding import encode_passages, encode_queries
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.models.dual_encoder import SIDES, DualEncoder


def embed_pairs(
    model: DualEncoder,
    pairs: SentencePairs,
    side: str = "query",
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(a [n, dim], b [n, dim])``: both sentences of every pair as ``side`` reads them (its
    prefix, max length and tower; STS is symmetric, so both sentences go through one side).
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    unique = list(dict.fromkeys([*pairs.sentences1, *pairs.sentences2]))
    if side == "query":
        vectors = encode_queries(model, unique, batch_size, show_progress, precision)
    else:
        titles = [None] * len(unique)
        vectors = encode_passages(
            model, titles, unique, batch_size, show_progress, precision=precision
        )
    row = {text: i for i, text in enumerate(unique)}
    first = vectors[[row[text] for text in pairs.sentences1]]
    second = vectors[[row[text] for text in pairs.sentences2]]
    return first, second
