"""MarginMSE distillation: the student learns the teacher's score margins between a query's
positive and each of its negatives (Hofstaetter et al. 2020).

Holds the margin loss and its train_joint form (plus the re-ranker's own listwise term); it must
not score passages or run models.
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval.losses._checks import check_matrix, check_same_shape, shape_of
from retrieval.losses.listwise import listwise_cross_entropy


def margin_mse(s_student: torch.Tensor, s_teacher: torch.Tensor) -> torch.Tensor:
    """Mean over queries and negatives of the squared gap between the student's and the
    (detached) teacher's margins; see :class:`MarginMSELoss`."""
    check_matrix(s_student, "s_student")
    check_same_shape(s_student, "s_student", s_teacher, "s_teacher")
    if s_student.shape[1] < 2:
        raise ValueError(
            f"s_student {shape_of(s_student)} needs a positive and at least one negative per row"
        )
    s_teacher = s_teacher.detach()
    student = s_student[:, :1] - s_student[:, 1:]
    teacher = s_teacher[:, :1] - s_teacher[:, 1:]
    return (student - teacher).pow(2).mean()


class MarginMSELoss(nn.Module):
    """MarginMSE: match the student's margin ``s(q, p) - s(q, n)`` to a fixed teacher's.

    Inputs: ``s_student`` ``[Q, n]`` the retriever's scores (as it ranks: similarity over
    temperature) and ``s_teacher`` ``[Q, n]`` the teacher's (a re-ranker's logits) over the same
    passages of each query, column 0 the positive and columns ``1..n-1`` its negatives::

        L = 1/(Q (n-1)) sum_q sum_{j>=1} ((s_student[q,0] - s_student[q,j])
                                          - (s_teacher[q,0] - s_teacher[q,j]))^2

    The teacher is fixed: no gradient reaches ``s_teacher``. Only margins are matched, so the
    student's scores may sit at any offset from the teacher's, but their spread must be able to
    reach the teacher's (a cosine retriever needs its temperature for logits of ~10).

    Cites: Hofstaetter et al. 2020, "Improving Efficient Neural Ranking Models with
    Cross-Architecture Knowledge Distillation" (arXiv:2010.02666), the Margin-MSE loss.
    """

    def forward(self, s_student: torch.Tensor, s_teacher: torch.Tensor) -> torch.Tensor:
        return margin_mse(s_student, s_teacher)


class JointMarginMSELoss(nn.Module):
    """train_joint's ``loss: margin_mse``: ``L = MarginMSE(s_de, s_ce) + L_sup``.

    Inputs as :class:`retrieval.losses.distillation.JointListwiseLoss`: ``s_de`` ``[Q, n]``
    retriever scores, ``s_ce`` ``[Q, n]`` the re-ranker's logits over the same lists. The
    retriever learns the re-ranker's margins with the re-ranker's logits detached (MarginMSE's
    fixed teacher: a teacher pulled towards its student's margins would make the target move
    with the student and could shrink both spreads together), while the re-ranker goes on
    learning from the labels through its own listwise cross-entropy,
    ``L_sup = 1/Q sum_q -log softmax(s_ce[q])[0]``; so the teacher improves during training,
    as in RocketQAv2, but only from the labels.

    After each call ``last_margin_mse`` and ``last_ce`` hold the two terms, detached.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_margin_mse: torch.Tensor | None = None
        self.last_ce: torch.Tensor | None = None

    def forward(self, s_de: torch.Tensor, s_ce: torch.Tensor) -> torch.Tensor:
        distill = margin_mse(s_de, s_ce)  # detaches s_ce
        ce = listwise_cross_entropy(s_ce)
        self.last_margin_mse, self.last_ce = distill.detach(), ce.detach()
        return distill + ce
