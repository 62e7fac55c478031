"""RocketQAv2 dynamic listwise distillation: KL between retriever and re-ranker list softmaxes.

Holds the KL term and the joint RocketQAv2 loss; it must not score passages or run models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_choice, check_matrix, check_same_shape
from retrieval.losses.listwise import listwise_cross_entropy

DIRECTIONS = ("de||ce", "ce||de")
REDUCTIONS = ("mean", "sum")


def listwise_kl(
    s_de: torch.Tensor,
    s_ce: torch.Tensor,
    direction: str = "de||ce",
    reduction: str = "mean",
    detach_teacher: bool = False,
) -> torch.Tensor:
    """Per-list KL between ``softmax(s_de)`` and ``softmax(s_ce)``, reduced over the ``Q`` lists.

    See :class:`ListwiseKLDistillationLoss` for the shapes and the formula.
    """
    check_choice(direction, "direction", DIRECTIONS)
    check_choice(reduction, "reduction", REDUCTIONS)
    check_matrix(s_de, "s_de")
    check_same_shape(s_de, "s_de", s_ce, "s_ce")
    if detach_teacher:
        s_ce = s_ce.detach()
    log_de = F.log_softmax(s_de, dim=-1)
    log_ce = F.log_softmax(s_ce, dim=-1)
    if direction == "de||ce":
        per_list = (log_de.exp() * (log_de - log_ce)).sum(-1)
    else:
        per_list = (log_ce.exp() * (log_ce - log_de)).sum(-1)
    return per_list.mean() if reduction == "mean" else per_list.sum()


class ListwiseKLDistillationLoss(nn.Module):
    """RocketQAv2's L_KL: align the retriever's and re-ranker's distributions over each list.

    Inputs: ``s_de`` ``[Q, n]`` retriever (dual-encoder) scores and ``s_ce`` ``[Q, n]``
    re-ranker (cross-encoder) logits over the same ``n`` passages of each query (column 0
    the positive). With ``P_de = softmax(s_de[q])`` and ``P_ce = softmax(s_ce[q])`` per row,
    the default ``direction="de||ce"`` is the paper's equation::

        L_KL = sum_q KL(P_de || P_ce) = sum_q sum_p P_de(p) * log(P_de(p) / P_ce(p))

    ``direction="ce||de"`` gives ``KL(P_ce || P_de)``, the teacher-first direction that the
    authors' released PaddlePaddle code computes (``kldiv_loss(x=log P_de, target=P_ce)``).
    ``reduction="sum"`` sums over queries as the paper writes; the default ``"mean"`` divides
    by ``Q`` so the weight does not change with the batch size (the released code also
    averages, over all ``Q*n`` entries).

    ``detach_teacher=False`` (default) lets gradients flow into both models, as in
    RocketQAv2's joint training; ``True`` stops them at ``s_ce`` (static distillation).

    Cites: Ren et al. 2021, "RocketQAv2: A Joint Training Method for Dense Passage Retrieval
    and Passage Re-ranking" (EMNLP), section "Dynamic Listwise Distillation".
    """

    def __init__(
        self, detach_teacher: bool = False, direction: str = "de||ce", reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.detach_teacher = detach_teacher
        self.direction = check_choice(direction, "direction", DIRECTIONS)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, s_de: torch.Tensor, s_ce: torch.Tensor) -> torch.Tensor:
        return listwise_kl(s_de, s_ce, self.direction, self.reduction, self.detach_teacher)

    def extra_repr(self) -> str:
        return (
            f"detach_teacher={self.detach_teacher}, direction={self.direction!r}, "
            f"reduction={self.reduction!r}"
        )


class JointListwiseLoss(ListwiseKLDistillationLoss):
    """RocketQAv2's final loss: ``L = L_KL + L_sup``, trained jointly on both models.

    Inputs as :class:`ListwiseKLDistillationLoss`. ``L_KL`` is that KL term (same options)
    and ``L_sup`` the re-ranker's listwise cross-entropy, column 0 being the positive::

        L_sup = 1/Q * sum_q -log softmax(s_ce[q])[0]

    After each call ``last_kl`` and ``last_ce`` hold the two terms, detached, and
    ``last_parts`` names them for the training log (``loss = kl + reranker_ce``), with the
    retriever's own listwise cross-entropy ``retriever_ce = 1/Q * sum_q -log softmax(s_de[q])[0]``
    beside them: not a term of the loss (the retriever learns from the KL alone), but the
    number that says whether the retriever ranks the positive first.

    Cites: Ren et al. 2021, "RocketQAv2" (EMNLP): L_final = L_KL + L_sup.
    """

    def __init__(
        self, detach_teacher: bool = False, direction: str = "de||ce", reduction: str = "mean"
    ) -> None:
        super().__init__(detach_teacher, direction, reduction)
        self.last_kl: torch.Tensor | None = None
        self.last_ce: torch.Tensor | None = None
        self.last_parts: dict[str, torch.Tensor] = {}

    def forward(self, s_de: torch.Tensor, s_ce: torch.Tensor) -> torch.Tensor:
        kl = super().forward(s_de, s_ce)
        ce = listwise_cross_entropy(s_ce)
        self.last_kl, self.last_ce = kl.detach(), ce.detach()
        with torch.no_grad():
            retriever_ce = listwise_cross_entropy(s_de.detach())
        self.last_parts = {"kl": self.last_kl, "reranker_ce": self.last_ce,
                           "retriever_ce": retriever_ce}  # fmt: skip
        return kl + ce
