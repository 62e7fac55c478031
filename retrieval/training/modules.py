"""Model + loss in one nn.Module, so a DeepSpeed engine's forward returns the loss directly
(ZeRO hooks then see every parameter use, whichever tower or head it belongs to)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from retrieval import distributed
from retrieval.losses import MoCoQueue, PointwiseBCELoss
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.loss_precision import as_fp32


class DualTrainingModule(nn.Module):
    def __init__(self, model: DualEncoder, loss: nn.Module, queue: MoCoQueue | None = None):
        super().__init__()
        self.model, self.loss, self.queue = model, loss, queue

    def forward(
        self,
        query_inputs: dict,
        passage_inputs: dict,
        false_negatives: dict | None = None,
        teacher: dict | None = None,
    ) -> torch.Tensor:
        queries, passages = self.model(query_inputs, passage_inputs)
        return self.embedding_loss(queries, passages, false_negatives, teacher)

    def embedding_loss(
        self,
        queries: torch.Tensor,
        passages: torch.Tensor,
        false_negatives: dict | None = None,
        teacher: dict | None = None,
    ) -> torch.Tensor:
        """The loss of encoded queries and passages; gradient caching (retrieval/training/
        grad_cache.py) encodes them itself and calls this, so both steps share one loss. The
        loss runs in float32 whatever the encoders' precision (loss_precision.py).
        ``false_negatives`` (``mask_false_negatives``: the collator's ``passage_rows`` and
        ``known_positives``) go to the loss, which masks known positives among the negatives.
        With ``teacher`` scores of each query's group (margin_mse), the loss distils them from
        the retriever's scores of its own group instead."""
        queries, passages = as_fp32(queries, passages)
        if teacher is not None:
            (scores,) = as_fp32(teacher["scores"])
            lists = passages.view(queries.shape[0], scores.shape[1], -1)
            return self.loss(self.model.score_lists(queries, lists), scores)
        ids = false_negatives or {}
        if self.queue is None:
            return self.loss(queries, passages, **ids)
        loss = self.loss(queries, passages, extra_negatives=self.queue.negatives(), **ids)
        # Every rank pushes every rank's passages, so all ranks hold the same queue.
        self.queue.push(distributed.all_gather_with_grad(passages.detach()))
        return loss


class CrossTrainingModule(nn.Module):
    """Scores groups of ``group_size`` pairs (positive first) with a listwise or pointwise loss."""

    def __init__(self, model: CrossEncoder, loss: nn.Module, group_size: int):
        super().__init__()
        self.model, self.loss, self.group_size = model, loss, group_size

    def forward(self, inputs: dict, teacher: dict | None = None) -> torch.Tensor:
        """``teacher``: the stored teacher scores of each group (loss listwise_ce_kl)."""
        (logits,) = as_fp32(self.model(inputs).view(-1, self.group_size))
        if teacher is not None:
            return self.loss(logits, teacher["scores"])
        if isinstance(self.loss, PointwiseBCELoss):
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1
            return self.loss(logits.reshape(-1), labels.reshape(-1))
        return self.loss(logits)


class JointTrainingModule(nn.Module):
    """RocketQAv2: the retriever's and the re-ranker's scores over the same lists, trained
    together with listwise KL distillation plus the re-ranker's listwise cross-entropy."""

    def __init__(self, dual: DualEncoder, cross: CrossEncoder, loss: nn.Module, group_size: int):
        super().__init__()
        self.dual, self.cross, self.loss, self.group_size = dual, cross, loss, group_size

    def forward(self, query_inputs: dict, passage_inputs: dict, pair_inputs: dict) -> torch.Tensor:
        queries, passages = self.dual(query_inputs, passage_inputs)
        return self.list_loss(queries, passages, self.cross(pair_inputs))

    def list_loss(
        self, queries: torch.Tensor, passages: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The loss of encoded queries, passages and the re-ranker's logits of the pairs; as
        DualTrainingModule.embedding_loss, shared with gradient caching; in float32."""
        queries, passages, logits = as_fp32(queries, passages, logits)
        passages = passages.view(queries.shape[0], self.group_size, -1)
        s_de = self.dual.score_lists(queries, passages)
        s_ce = logits.view(-1, self.group_size)
        return self.loss(s_de, s_ce)


class PairTrainingModule(nn.Module):
    """Sentence pairs through one encoder (both on the query side), an optional training-only
    projector, then the pair loss as retrieval/training/pair_objectives.py calls it. With a
    queue, the loss also sees past ``b`` vectors as negatives and, as in DualTrainingModule,
    every rank pushes every rank's ``b``, so all ranks hold the same queue. The projector and a
    loss's own head (sbert_softmax) live here, not in the DualEncoder, so export drops them."""

    def __init__(
        self,
        model: DualEncoder,
        loss: nn.Module,
        objective: Callable[..., torch.Tensor],
        projector: nn.Module | None = None,
        queue: MoCoQueue | None = None,
    ):
        super().__init__()
        self.model, self.loss, self.objective = model, loss, objective
        self.projector, self.queue = projector, queue

    def forward(self, first: dict, second: dict, targets: dict) -> torch.Tensor:
        a, b = self.model.encode_query(first), self.model.encode_query(second)
        if self.projector is not None:
            a, b = self.projector(a), self.projector(b)
        a, b = as_fp32(a, b)
        extra = self.queue.negatives() if self.queue is not None else None
        loss = self.objective(self.loss, a, b, targets, extra)
        if self.queue is not None:
            self.queue.push(distributed.all_gather_with_grad(b.detach()))
        return loss
