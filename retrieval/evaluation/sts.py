"""STS evaluation: how well the similarity of two sentence vectors follows human scores.

Agrees with sentence-transformers' EmbeddingSimilarityEvaluator (same similarities, same
correlation coefficients, same keys); holds no file reading and no CLI.
"""

from __future__ import annotations

import numpy as np

from retrieval.evaluation.correlation import pearson, spearman
from retrieval.evaluation.pair_embeddings import embed_pairs
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.evaluation.similarity import pair_similarities
from retrieval.models.dual_encoder import DualEncoder


def sts_metrics(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """For each similarity ``f`` in cosine, dot, euclidean, manhattan (negated distances)::

    spearman_f = Spearman rho(labels, [f(a_i, b_i)]_i)
    pearson_f  = Pearson r(labels, [f(a_i, b_i)]_i)
    """
    metrics: dict[str, float] = {}
    for name, scores in pair_similarities(a, b).items():
        metrics[f"spearman_{name}"] = spearman(labels, scores)
        metrics[f"pearson_{name}"] = pearson(labels, scores)
    return metrics


def evaluate_sts(
    model: DualEncoder,
    pairs: SentencePairs,
    side: str = "query",
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> dict[str, float]:
    """Encode both sentences of each pair (see :func:`embed_pairs`) and return
    :func:`sts_metrics` against the pairs' labels."""
    a, b = embed_pairs(model, pairs, side, batch_size, precision, show_progress)
    return sts_metrics(a, b, pairs.labels)
