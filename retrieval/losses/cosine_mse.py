"""Cosine MSE: regress the cosine of a sentence pair on its similarity score (STS-style data).

Holds only this loss; the ranking loss on the same data is CoSENT (cosent.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_same_shape, shape_of


class CosineMSELoss(nn.Module):
    """Mean squared error between each pair's cosine and its score scaled to [0, 1].

    Inputs: ``a`` ``[N, d]`` and ``b`` ``[N, d]`` (pair ``i`` is ``(a_i, b_i)``) and ``scores``
    ``[N]`` in ``[min_score, max_score]`` (STS-B: 0 and 5)::

        y_i  = (score_i - min_score) / (max_score - min_score)
        loss = 1/N * sum_i (cos(a_i, b_i) - y_i)^2

    Cites: Reimers and Gurevych 2019, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks" (EMNLP), section 3, regression objective (sentence-transformers'
    CosineSimilarityLoss).
    """

    def __init__(self, min_score: float = 0.0, max_score: float = 1.0) -> None:
        super().__init__()
        if not max_score > min_score:
            raise ValueError(f"max_score {max_score} must be above min_score {min_score}")
        self.min_score = float(min_score)
        self.max_score = float(max_score)

    def forward(self, a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        check_matrix(a, "a")
        check_same_shape(a, "a", b, "b")
        if scores.shape != (a.shape[0],):
            raise ValueError(f"scores {shape_of(scores)} must be [N] for a {shape_of(a)}")
        targets = (scores.to(a.dtype) - self.min_score) / (self.max_score - self.min_score)
        return F.mse_loss(F.cosine_similarity(a, b, dim=-1), targets)

    def extra_repr(self) -> str:
        return f"min_score={self.min_score}, max_score={self.max_score}"
