"""How each pair loss reads a batch of sentence pairs: the vectors ``a`` and ``b`` ``[B, d]`` of
both sentences, their scores in [0, 1] and positive flags (retrieval/training/pairs.py).

Holds only this mapping from a config name to a call of its loss; no loss arithmetic lives here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses import InfoNCELoss

Targets = dict[str, torch.Tensor]


def graded(loss: nn.Module, a, b, targets: Targets, extra=None) -> torch.Tensor:
    """cosent (ranks pairs by score) and cosine_mse (regresses the cosine on it)."""
    return loss(a, b, targets["score"])


def score_classes(score: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Scores in [0, 1] cut into ``num_labels`` equal bins: ``min(floor(score * n), n - 1)``
    (0/1 labels with ``n = 2`` are their own classes; NLI labels 0, 1, 2 scaled to 0, 0.5, 1
    with ``n = 3`` too)."""
    return (score * num_labels).floor().clamp(0, num_labels - 1).long()


def classified(loss: nn.Module, a, b, targets: Targets, extra=None) -> torch.Tensor:
    """sbert_softmax: the classifier over ``[u, v, |u - v|]`` predicts the score's bin."""
    return loss(a, b, score_classes(targets["score"], loss.num_labels))


def labelled_row(loss: nn.Module, a, b, targets: Targets, extra=None) -> torch.Tensor:
    """circle, multilabel_ce: the batch as one row of ``B`` labelled pairs, ``scores [1, B]``
    the pairs' cosines and ``labels [1, B]`` their positive flags."""
    scores = F.cosine_similarity(a, b, dim=-1)[None, :]
    return loss(scores, targets["positive"][None, :])


def in_batch(loss: nn.Module, a, b, targets: Targets, extra=None) -> torch.Tensor:
    """infonce (supervised SimCSE on positive pairs): ``a_i``'s positive is ``b_i``, every other
    ``b_j`` and the queue's rows are its negatives."""
    return loss(a, b, extra_negatives=extra)


def dropout_views(loss: nn.Module, a, b, targets: Targets, extra=None) -> torch.Tensor:
    """simcse_unsup: ``a`` and ``b`` are the same sentences under two dropout masks. With a
    queue, the same formula with the queue's rows as extra candidates: InfoNCE with cosine
    similarity and SimCSE's temperature (SimCSELoss itself takes no extra negatives)."""
    if extra is None:
        return loss(a, b)
    return InfoNCELoss(loss.temperature, "cosine")(a, b, extra_negatives=extra)


PAIR_OBJECTIVES: dict[str, Callable[..., torch.Tensor]] = {
    "cosent": graded,
    "cosine_mse": graded,
    "sbert_softmax": classified,
    "infonce": in_batch,
    "simcse_unsup": dropout_views,
    "circle": labelled_row,
    "multilabel_ce": labelled_row,
}
