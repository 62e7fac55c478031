"""Known false negatives: candidates that are a known positive of the query scoring them.

A qrels query can have several positives, and the batch holds other queries' passages (and,
with cross-batch negatives, every worker's): one of them may be a positive of this query, and
InfoNCE would push it away. Passages are compared by corpus row; such a candidate, unless it
is the query's own target, gets a ``-inf`` logit, so it leaves the softmax. Holds only the mask
and its use; the losses decide which candidates and targets they have.
"""

from __future__ import annotations

import torch

from retrieval.losses._checks import shape_of


def masks_false_negatives(
    queries: torch.Tensor,
    passages: torch.Tensor,
    passage_rows: torch.Tensor | None,
    known_positives: torch.Tensor | None,
) -> bool:
    """Whether a loss call masks: it does when given the passages' corpus rows ``[P]`` and the
    queries' known positives ``[B, K]``, both or neither, fitting ``passages`` and ``queries``."""
    if passage_rows is None and known_positives is None:
        return False
    if passage_rows is None or known_positives is None:
        raise ValueError("passage_rows and known_positives are given together or not at all")
    if tuple(passage_rows.shape) != (passages.shape[0],) or (
        known_positives.dim() != 2 or known_positives.shape[0] != queries.shape[0]
    ):
        raise ValueError(
            f"passage_rows {shape_of(passage_rows)} and known_positives "
            f"{shape_of(known_positives)} do not fit passages {shape_of(passages)} and "
            f"queries {shape_of(queries)} (want [P] and [B, K])"
        )
    return True


def known_positive_mask(
    known_positives: torch.Tensor, candidate_rows: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """``[n, m]`` bool: candidate ``j`` is a known positive of query ``i`` and not its target.

    ``known_positives`` ``[n, K]`` holds each query's positive corpus rows, padded with ``-1``
    (never a row); ``candidate_rows`` ``[m]`` the corpus row of each candidate; ``targets``
    ``[n]`` the column of each query's own positive, which stays unmasked."""
    if known_positives.dim() != 2 or candidate_rows.dim() != 1:
        raise ValueError(
            f"known_positives must be [n, K] and candidate_rows [m], got "
            f"{shape_of(known_positives)} and {shape_of(candidate_rows)}"
        )
    rows = candidate_rows.to(known_positives.device)
    mask = (known_positives[:, None, :] == rows[None, :, None]).any(dim=-1)
    mask[torch.arange(mask.shape[0], device=mask.device), targets] = False
    return mask


def mask_scores(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``scores`` ``[n, M]`` with ``-inf`` where ``mask`` ``[n, m]``, ``m <= M``, is set (the
    first ``m`` columns; later ones, e.g. a queue's rows whose corpus rows are unknown, stay)."""
    if mask is None:
        return scores
    if mask.shape[0] != scores.shape[0] or mask.shape[1] > scores.shape[1]:
        raise ValueError(f"mask {shape_of(mask)} does not fit scores {shape_of(scores)}")
    padded = torch.zeros_like(scores, dtype=torch.bool)
    padded[:, : mask.shape[1]] = mask
    return scores.masked_fill(padded, float("-inf"))
