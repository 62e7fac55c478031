"""Cross-encoder (re-ranker) losses: listwise softmax cross-entropy and pointwise BCE.

Holds only supervised re-ranker losses; distillation between models lives in distillation.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_same_shape, shape_of


def listwise_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``mean_q -log softmax(logits_q)[0]`` for ``logits`` ``[Q, n]`` with the positive first."""
    check_matrix(logits, "logits")
    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets)


class ListwiseCELoss(nn.Module):
    """Softmax cross-entropy over each query's list of re-ranker logits.

    Input: ``logits`` ``[Q, n]`` in the RocketQA group layout: row ``q`` scores query ``q``'s
    list, column 0 its positive and columns ``1..n-1`` its negatives (a flat cross-encoder
    output of ``Q*n`` scores becomes this with ``.view(Q, n)``)::

        loss = 1/Q * sum_q -log( exp(z_q0) / sum_k exp(z_qk) )

    Cites: Ren et al. 2021, "RocketQAv2: A Joint Training Method for Dense Passage Retrieval
    and Passage Re-ranking" (EMNLP), the re-ranker's supervised loss L_sup.
    """

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return listwise_cross_entropy(logits)


class PointwiseBCELoss(nn.Module):
    """Binary cross-entropy on one relevance logit per (query, passage) pair.

    Inputs: ``logits`` ``[N]`` and ``labels`` ``[N]`` in ``[0, 1]`` (1 = relevant)::

        loss = 1/N * sum_i -( y_i log sigmoid(z_i) + (1 - y_i) log(1 - sigmoid(z_i)) )

    Cites: Nogueira and Cho 2019, "Passage Re-ranking with BERT"; Qu et al. 2021, "RocketQA"
    (the cross-encoder trained as a binary classifier).
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_same_shape(logits, "logits", labels, "labels")
        if logits.dim() != 1:
            raise ValueError(f"logits and labels must be 1-D [N], got {shape_of(logits)}")
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
