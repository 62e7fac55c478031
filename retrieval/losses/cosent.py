"""CoSENT: a ranking loss on the cosines of labelled sentence pairs (STS-style data).

Holds only the CoSENT loss; no contrastive or distillation losses live here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_positive, check_same_shape, shape_of


class CoSENTLoss(nn.Module):
    """Push every higher-labelled pair's cosine above every lower-labelled pair's.

    Inputs: ``a`` ``[N, d]`` and ``b`` ``[N, d]`` (pair ``i`` is ``(a_i, b_i)``) and
    ``labels`` ``[N]`` (any real similarity grades). With ``s_i = scale * cos(a_i, b_i)``::

        loss = log( 1 + sum_{(i, j): y_i > y_j} exp(s_j - s_i) )

    Zero pairs with ``y_i > y_j`` (all labels equal) gives ``log 1 = 0``.

    Cites: Su Jianlin 2022, "CoSENT (1): a sentence-embedding scheme more effective than
    Sentence-BERT", https://kexue.fm/archives/8847.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = check_positive(scale, "scale")

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_matrix(a, "a")
        check_same_shape(a, "a", b, "b")
        if labels.shape != (a.shape[0],):
            raise ValueError(f"labels {shape_of(labels)} must be [N] for a {shape_of(a)}")
        scores = F.cosine_similarity(a, b, dim=-1) * self.scale
        differences = scores[None, :] - scores[:, None]  # [i, j] = s_j - s_i
        ordered = labels[:, None] > labels[None, :]  # [i, j] = y_i > y_j
        differences = differences.masked_fill(~ordered, float("-inf")).flatten()
        return torch.logsumexp(torch.cat([differences.new_zeros(1), differences]), dim=0)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
