"""Unsupervised SimCSE: two dropout views of each sentence are each other's positive.

Holds only the SimCSE loss; the two forward passes that make the views belong to the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_positive, check_same_shape


class SimCSELoss(nn.Module):
    """Contrast ``z1_i`` against all of ``z2`` with ``z2_i`` as the positive.

    Inputs: ``z1`` ``[N, d]`` and ``z2`` ``[N, d]``, the same ``N`` sentences encoded twice
    with dropout on. With the cosine ``cos``::

        loss = 1/N * sum_i -log( exp(cos(z1_i, z2_i)/tau) / sum_j exp(cos(z1_i, z2_j)/tau) )

    Cites: Gao, Yao and Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence
    Embeddings" (EMNLP), section 3; ``tau = 0.05`` as there.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        check_matrix(z1, "z1")
        check_same_shape(z1, "z1", z2, "z2")
        scores = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).transpose(0, 1)
        targets = torch.arange(z1.shape[0], device=z1.device)
        return F.cross_entropy(scores / self.temperature, targets)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
