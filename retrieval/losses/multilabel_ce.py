"""Multi-label categorical cross-entropy: softmax cross-entropy for rows with several positives.

Holds only this loss; one positive per row is InfoNCE (contrastive.py).
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval.losses._checks import check_matrix, check_positive, shape_of


class MultiLabelCELoss(nn.Module):
    """Every positive score above 0 and every negative below 0, each row as one softmax-style
    term (no per-label sigmoid, no threshold to tune).

    Inputs: ``scores`` ``[B, N]`` (logits: a query against ``N`` candidates) and ``labels``
    ``[B, N]`` with 1 for each positive and 0 for each negative. With ``s = scale * scores``::

        loss_b = log(1 + sum_{j: y_bj = 0} exp(s_bj)) + log(1 + sum_{j: y_bj = 1} exp(-s_bj))
        loss   = 1/B * sum_b loss_b

    (an empty sum is 0, so a row without positives only pushes its negatives down).

    Cites: Su Jianlin 2020, "Generalising softmax + cross-entropy to multi-label
    classification" (in Chinese), https://kexue.fm/archives/7359.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = check_positive(scale, "scale")

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_matrix(scores, "scores")
        if labels.shape != scores.shape:
            raise ValueError(f"labels {shape_of(labels)} must match scores {shape_of(scores)}")
        positive = labels.bool()
        s = scores * self.scale
        zero = s.new_zeros(s.shape[0], 1)  # the "1 +": a logit 0 in each logsumexp
        negatives = torch.cat([zero, s.masked_fill(positive, float("-inf"))], dim=1)
        positives = torch.cat([zero, (-s).masked_fill(~positive, float("-inf"))], dim=1)
        return (torch.logsumexp(negatives, dim=1) + torch.logsumexp(positives, dim=1)).mean()

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
