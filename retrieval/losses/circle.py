"""Circle loss: pair-similarity optimisation with self-paced weights and margins.

Holds only the Circle loss; how scores are made (cosines of query and passage vectors) is the
caller's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_positive, shape_of


class CircleLoss(nn.Module):
    """Per row, push every positive similarity above ``1 - m`` and every negative below ``m``,
    weighting each by how far it is from its optimum.

    Inputs: ``scores`` ``[B, N]`` similarities in ``[-1, 1]`` (cosines: a query against ``N``
    passages, or one row of ``N`` labelled pairs) and ``labels`` ``[B, N]`` with 1 for a
    positive and 0 for a negative (several positives per row allowed). For row ``b`` with
    positive scores ``s_p`` and negative scores ``s_n``::

        alpha_p = max(0, 1 + m - s_p)     alpha_n = max(0, s_n + m)   (no gradient)
        delta_p = 1 - m                   delta_n = m
        loss_b  = log(1 + sum_n exp(gamma * alpha_n * (s_n - delta_n))
                        * sum_p exp(-gamma * alpha_p * (s_p - delta_p)))
        loss    = 1/B * sum_b loss_b

    A row without a positive or without a negative adds 0.

    Cites: Sun, Cheng, Zhang, Zhang, Zheng, Wang and Wei 2020, "Circle Loss: A Unified
    Perspective of Pair Similarity Optimization" (CVPR), section 3 (self-paced weights, then
    the margins O_p = 1 + m, O_n = -m, delta_p = 1 - m, delta_n = m); ``m = 0.25`` and
    ``gamma = 256`` are the paper's face-recognition defaults.
    """

    def __init__(self, m: float = 0.25, gamma: float = 256.0) -> None:
        super().__init__()
        self.m = float(m)
        self.gamma = check_positive(gamma, "gamma")

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_matrix(scores, "scores")
        if labels.shape != scores.shape:
            raise ValueError(f"labels {shape_of(labels)} must match scores {shape_of(scores)}")
        positive = labels.bool()
        detached = scores.detach()
        alpha_p = (1 + self.m - detached).clamp(min=0)
        alpha_n = (detached + self.m).clamp(min=0)
        logit_p = -self.gamma * alpha_p * (scores - (1 - self.m))
        logit_n = self.gamma * alpha_n * (scores - self.m)
        both = positive.any(dim=1) & (~positive).any(dim=1)
        if not bool(both.any()):
            return scores.sum() * 0.0
        # rows with both kinds only: a logsumexp over an all -inf row has a NaN gradient
        lse_p = torch.logsumexp(logit_p[both].masked_fill(~positive[both], float("-inf")), dim=1)
        lse_n = torch.logsumexp(logit_n[both].masked_fill(positive[both], float("-inf")), dim=1)
        return F.softplus(lse_p + lse_n).sum() / scores.shape[0]

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"
