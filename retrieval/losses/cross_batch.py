"""Cross-batch negatives (RocketQA): InfoNCE against the passages of every data-parallel worker.

Holds only the loss; the differentiable gather lives in retrieval/distributed.py.
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval import distributed
from retrieval.losses._checks import check_choice, check_positive
from retrieval.losses.contrastive import (
    SIMILARITIES,
    candidate_cross_entropy,
    group_size,
    with_extra_negatives,
)
from retrieval.losses.false_negatives import known_positive_mask, masks_false_negatives


class CrossBatchInfoNCELoss(nn.Module):
    """InfoNCE whose candidates are the passages of all ``W`` workers (RocketQA's cross-batch).

    Per worker: ``queries`` ``[B, d]`` and ``passages`` ``[B*(1+H), d]`` in the
    :class:`~retrieval.losses.contrastive.InfoNCELoss` layout (every worker the same ``B``
    and ``H``). The passages are all-gathered with gradient, rank-major, into
    ``P = [p^(0); p^(1); ...; p^(W-1)]`` of ``W*B*(1+H)`` rows, so local query ``i`` on rank
    ``r`` has its positive at row ``(r*B + i)*(1+H)`` and ``W*B*(1+H) - 1`` negatives
    (plus ``M`` optional ``extra_negatives``, appended locally, not gathered)::

        L_r = 1/B * sum_i -log softmax( s(q_i, P) / tau )[(r*B + i)*(1+H)]

    Scaling: no extra factor is needed. The gather's backward sums gradients over ranks, so
    the mean over ranks of each rank's parameter gradient (what DDP/DeepSpeed apply) equals
    the gradient of the one-process InfoNCE over the concatenated ``W*B`` queries, and the
    mean of the ``L_r`` equals that loss. With ``gather_queries=True`` every rank also
    gathers the queries and computes that full loss itself (same value on all ranks, ``W``
    times the score matrix); the averaged gradient is again the one-process gradient.

    False negatives: with ``passage_rows`` and ``known_positives`` (as for ``InfoNCELoss``),
    the passages' corpus rows are gathered beside them, and every gathered passage that is a
    known positive of the scoring query, other than its target, leaves the softmax; with
    ``gather_queries`` each rank's mask rows travel with its queries.

    In one process (no process group) this is exactly ``InfoNCELoss``. After each call
    ``last_num_candidates`` holds ``W*B*(1+H) + M``.

    Cites: Qu et al. 2021, "RocketQA: An Optimized Training Approach to Dense Passage
    Retrieval for Open-Domain Question Answering" (NAACL 2021), "cross-batch negatives".
    """

    def __init__(
        self, temperature: float = 1.0, similarity: str = "dot", gather_queries: bool = False
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.similarity = check_choice(similarity, "similarity", SIMILARITIES)
        self.gather_queries = gather_queries
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
        local = queries.shape[0]
        masks = masks_false_negatives(queries, passages, passage_rows, known_positives)
        all_passages = distributed.all_gather_with_grad(passages)
        own = (distributed.rank() * local + torch.arange(local, device=queries.device)) * group
        mask = None
        if masks:  # this rank's queries against every rank's passages
            all_rows = distributed.all_gather(passage_rows)
            mask = known_positive_mask(known_positives, all_rows, own)
        if self.gather_queries:
            scored = distributed.all_gather_with_grad(queries)
            positives = torch.arange(scored.shape[0], device=queries.device) * group
            mask = distributed.all_gather(mask) if masks else None
        else:
            scored, positives = queries, own
        candidates = with_extra_negatives(all_passages, extra_negatives)
        loss, scores = candidate_cross_entropy(
            scored, candidates, positives, self.temperature, self.similarity, mask
        )
        self.last_num_candidates = scores.shape[1]
        return loss

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, similarity={self.similarity!r}, "
            f"gather_queries={self.gather_queries}"
        )
