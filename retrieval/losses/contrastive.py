"""InfoNCE with in-batch and hard negatives: the dual encoder's main contrastive loss.

Holds the single-process loss and its scoring helpers; it must not talk to torch.distributed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import (
    check_choice,
    check_matrix,
    check_positive,
    check_same_width,
    shape_of,
)
from retrieval.losses.false_negatives import (
    known_positive_mask,
    mask_scores,
    masks_false_negatives,
)

SIMILARITIES = ("dot", "cosine")


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, similarity: str = "dot") -> torch.Tensor:
    """``[n, d]`` x ``[m, d]`` -> ``[n, m]`` dot products (cosines if ``similarity="cosine"``)."""
    check_choice(similarity, "similarity", SIMILARITIES)
    if similarity == "cosine":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return a @ b.transpose(0, 1)


def group_size(queries: torch.Tensor, passages: torch.Tensor) -> int:
    """Passages per query, ``1 + H``, after checking the ``[B, d]`` / ``[B*(1+H), d]`` layout."""
    check_matrix(queries, "queries")
    check_matrix(passages, "passages")
    check_same_width(queries, "queries", passages, "passages")
    if passages.shape[0] % queries.shape[0]:
        raise ValueError(
            f"queries {shape_of(queries)} and passages {shape_of(passages)}: "
            "passages must have B*(1+H) rows for B queries"
        )
    return passages.shape[0] // queries.shape[0]


def candidate_cross_entropy(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positives: torch.Tensor,
    temperature: float,
    similarity: str,
    false_negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over rows of ``-log softmax(sim(q_i, candidates) / tau)[positives[i]]``.

    Returns ``(loss, scores)``; ``scores`` is ``[len(queries), len(candidates)]``. The shared
    core of :class:`InfoNCELoss` and the cross-batch loss, which differ only in the candidates.
    ``false_negatives`` ``[len(queries), m]`` (bool, first ``m`` candidates) leave the softmax
    (retrieval/losses/false_negatives.py).
    """
    scores = similarity_matrix(queries, candidates, similarity) / temperature
    scores = mask_scores(scores, false_negatives)
    return F.cross_entropy(scores, positives), scores


def with_extra_negatives(
    passages: torch.Tensor, extra_negatives: torch.Tensor | None
) -> torch.Tensor:
    """Append ``extra_negatives`` ``[M, d]``, ``M >= 0`` (e.g. a MoCo queue), after the passages."""
    if extra_negatives is None:
        return passages
    if extra_negatives.dim() != 2:  # zero rows is fine: an empty queue at the first step
        raise ValueError(f"extra_negatives must be 2-D [M, d], got {shape_of(extra_negatives)}")
    check_same_width(passages, "passages", extra_negatives, "extra_negatives")
    extra = extra_negatives.to(device=passages.device, dtype=passages.dtype)
    return torch.cat([passages, extra], dim=0)


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch negatives and every query's hard negatives.

    Shapes: ``queries`` q ``[B, d]``; ``passages`` p ``[B*(1+H), d]`` where, for query ``i``,
    row ``i*(1+H)`` is its positive and rows ``i*(1+H)+1 .. i*(1+H)+H`` its ``H`` hard
    negatives (``H = 0`` gives plain in-batch negatives); optional ``extra_negatives``
    ``[M, d]`` are appended to the candidates. Every query is scored against all
    ``B*(1+H) + M`` candidates::

        loss = 1/B * sum_i -log( exp(s(q_i, p_{i(1+H)}) / tau) / sum_j exp(s(q_i, c_j) / tau) )

    with ``s`` the dot product (``similarity="dot"``, the RocketQA/DPR choice; the model may
    already normalise its embeddings) or the cosine (``similarity="cosine"``, usually with
    ``tau`` about 0.05). After each call ``last_num_candidates`` holds ``B*(1+H) + M``.

    False negatives: given ``passage_rows`` ``[B*(1+H)]`` (each passage's corpus row) and
    ``known_positives`` ``[B, K]`` (each query's positive rows, ``-1``-padded), the sum over
    ``j`` leaves out every passage ``c_j`` that is a known positive of ``q_i`` other than its
    target (its logit is ``-inf``; the queue's ``M`` rows are never left out).

    Cites: van den Oord et al. 2018, "Representation Learning with Contrastive Predictive
    Coding" (InfoNCE); Karpukhin et al. 2020, "Dense Passage Retrieval for Open-Domain
    Question Answering" (in-batch + hard negatives); Qu et al. 2021, "RocketQA".
    """

    def __init__(self, temperature: float = 1.0, similarity: str = "dot") -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.similarity = check_choice(similarity, "similarity", SIMILARITIES)
        self.last_num_candidates: int | None = None

    def forward(
        self,
        queries: torch.Tensor,
        passages: torch.Tensor,
        extra_negatives: torch.Tensor | None = None,
        passage_rows: torch.Tensor | None = None,
        known_positives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        group = group_size(queries, passages)
        candidates = with_extra_negatives(passages, extra_negatives)
        positives = torch.arange(queries.shape[0], device=queries.device) * group
        mask = None
        if masks_false_negatives(queries, passages, passage_rows, known_positives):
            mask = known_positive_mask(known_positives, passage_rows, positives)
        loss, scores = candidate_cross_entropy(
            queries, candidates, positives, self.temperature, self.similarity, mask
        )
        self.last_num_candidates = scores.shape[1]
        return loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, similarity={self.similarity!r}"
