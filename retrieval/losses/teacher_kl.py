"""A re-ranker's listwise cross-entropy plus KL to a teacher's stored scores of the same list.

Holds one loss; the teacher's scores come with the examples (train_cross: the retriever's
scores from mine's lists), never from a model run here.
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval.losses._checks import check_matrix, check_same_shape
from retrieval.losses.distillation import listwise_kl
from retrieval.losses.listwise import listwise_cross_entropy


class ListwiseCETeacherKLLoss(nn.Module):
    """Listwise softmax CE on the labels plus KL from a teacher's distribution over each list.

    Inputs: ``logits`` ``[Q, n]`` (re-ranker, column 0 the positive) and ``teacher`` ``[Q, n]``,
    the teacher's scores of the same passages. With ``P_t = softmax(teacher_q / temperature)``
    and ``P_s = softmax(logits_q)``::

        loss = 1/Q * sum_q -log P_s(0)  +  kl_weight * 1/Q' * sum_q' KL(P_t || P_s)

    where ``q'`` runs over the lists whose teacher scores are all finite (a positive the
    retriever did not return has no score: NaN leaves its list to the CE alone). The teacher
    is fixed (no gradient).

    Why: a re-ranker trained on 709 SciFact claims learns to separate a positive from its
    near misses, but lets off-topic passages deep in a top 100 outscore it, which the retriever
    already ranks low (docs/reranker.md). The KL term keeps the retriever's view of the whole
    list while the CE teaches the labels; train_joint's RocketQAv2 KL does this with a live
    retriever, this does it in train_cross from mine's stored scores.
    """

    def __init__(self, kl_weight: float = 1.0, temperature: float = 1.0):
        super().__init__()
        if kl_weight < 0 or temperature <= 0:
            raise ValueError(f"kl_weight must be >= 0 and temperature > 0, got "
                             f"{kl_weight} and {temperature}")  # fmt: skip
        self.kl_weight, self.temperature = kl_weight, temperature

    def forward(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        check_matrix(logits, "logits")
        check_same_shape(logits, "logits", teacher, "teacher")
        loss = listwise_cross_entropy(logits)
        scored = torch.isfinite(teacher).all(dim=1)
        if self.kl_weight == 0 or not bool(scored.any()):
            return loss
        teacher = teacher[scored].detach().to(logits.dtype) / self.temperature
        return loss + self.kl_weight * listwise_kl(teacher, logits[scored])
