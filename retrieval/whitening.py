"""Post-hoc BERT-whitening: fit a mean and a whitening matrix on a sample of a model's vectors and
add them to the model as a linear head (saved as a sentence-transformers Dense module).

Holds the fit and its attachment to a DualEncoder; reading text files and the CLI live elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from retrieval.encoding import encode_passages, encode_queries
from retrieval.models.dual_encoder import DenseHead, DualEncoder


def fit_whitening(
    vectors: np.ndarray, dim: int | None = None, beta: float = 1.0, gamma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(weight [d, k], bias [k])`` of the map ``y = x @ weight + bias`` fitted on ``vectors``
    ``[n, d]`` (float64 arithmetic)::

        mu = mean_i x_i,   cov = 1/(n-1) sum_i (x_i - mu)^T (x_i - mu) = U diag(s) U^T  (SVD)
        y  = (x - beta * mu) @ U[:, :k] @ diag(s[:k]) ** (-gamma / 2)

    so ``weight = U[:, :k] diag(s[:k])^(-gamma/2)`` and ``bias = -beta * mu @ weight``.
    ``beta = gamma = 1`` is plain whitening: the sample covariance of the ``y`` of the fitted
    vectors is the identity (``k`` components, the largest-variance ones). ``beta = gamma = 0``
    with ``k = d`` is ``y = x @ U``, an orthogonal map: every dot product, cosine and distance
    is unchanged, so retrieval and STS scores are those of the plain model.

    Cites: Su, Cao, Liang and Ou 2021, "Whitening Sentence Representations for Better Semantics
    and Faster Retrieval" (arXiv:2103.15316); the beta/gamma variant from Su 2022, "When
    BERT-whitening gets hyperparameters" (https://kexue.fm/archives/9079).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"whitening needs at least 2 vectors as an [n, d] array, got {x.shape}")
    n, d = x.shape
    k = d if dim is None else int(dim)
    if not 1 <= k <= d:
        raise ValueError(f"whitening dimension must be in 1..{d}, got {k}")
    mu = x.mean(axis=0)
    centred = x - mu
    cov = centred.T @ centred / (n - 1)
    u, s, _ = np.linalg.svd(cov)
    rank = int(np.sum(s > 1e-12 * max(s[0], 1e-300)))
    if gamma != 0 and k > rank:
        # e.g. all-MiniLM-L6-v2: its final LayerNorm zeroes 3 of 384 output dimensions, so
        # its vectors span 381 at most
        raise ValueError(
            f"the {n} vectors span only {rank} dimensions, fewer than {k}: whitening would "
            f"blow up rounding noise; choose a dimension <= {rank} or fit on more texts"
        )
    weight = u[:, :k] * s[:k] ** (-gamma / 2)
    bias = -beta * mu @ weight
    return weight, bias


def pooled_vectors(
    model: DualEncoder,
    texts: list[str],
    side: str = "passage",
    batch_size: int = 32,
    precision: str = "fp32",
    show_progress: bool = True,
) -> np.ndarray:
    """The model's vectors of ``texts`` before L2 normalisation (after any head it has)."""
    settings = dataclasses.replace(model.settings, normalize=False)
    plain = DualEncoder(
        model.query_model, model.tokenizer, settings, model.passage_model, model.head
    )
    if side == "query":
        return encode_queries(plain, texts, batch_size, show_progress, precision)
    return encode_passages(
        plain, [None] * len(texts), texts, batch_size, show_progress, precision=precision
    )


def whitened(
    model: DualEncoder, vectors: np.ndarray, dim: int | None, beta: float = 1.0, gamma: float = 1.0
) -> DualEncoder:
    """A DualEncoder sharing ``model``'s towers with whitening fitted on ``vectors`` (the model's
    own :func:`pooled_vectors`) as its head. An identity head already there is composed with
    the new map into one linear head, so whitening a whitened model stays one Dense module.
    """
    weight, bias = fit_whitening(vectors, dim, beta, gamma)
    new_weight = torch.from_numpy(weight.T.copy())  # nn.Linear stores [out, in]
    new_bias = torch.from_numpy(bias.copy())
    if model.head is not None:
        old_weight, old_bias, activation = model.head.export()
        if activation != "identity":
            raise ValueError(f"cannot whiten after a {activation} head; only identity heads")
        old_weight = old_weight.detach().double()
        if old_bias is not None:
            new_bias = new_bias + new_weight @ old_bias.detach().double()
        new_weight = new_weight @ old_weight
    head = DenseHead(new_weight.float(), new_bias.float())
    shared_passage = None if model.passage_model is model.query_model else model.passage_model
    return DualEncoder(model.query_model, model.tokenizer, model.settings, shared_passage, head)
