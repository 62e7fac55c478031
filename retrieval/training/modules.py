"""Model + loss in one nn.Module, so a DeepSpeed engine's forward returns the loss directly
(ZeRO hooks then see every parameter use, whichever tower or head it belongs to)."""

from __future__ import annotations

import torch
from torch import nn

from retrieval import distributed
from retrieval.losses import MoCoQueue, PointwiseBCELoss
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder


class DualTrainingModule(nn.Module):
    def __init__(self, model: DualEncoder, loss: nn.Module, queue: MoCoQueue | None = None):
        super().__init__()
        self.model, self.loss, self.queue = model, loss, queue

    def forward(self, query_inputs: dict, passage_inputs: dict) -> torch.Tensor:
        queries, passages = self.model(query_inputs, passage_inputs)
        if self.queue is None:
            return self.loss(queries, passages)
        loss = self.loss(queries, passages, extra_negatives=self.queue.negatives())
        # Every rank pushes every rank's passages, so all ranks hold the same queue.
        self.queue.push(distributed.all_gather_with_grad(passages.detach()))
        return loss


class CrossTrainingModule(nn.Module):
    """Scores groups of ``group_size`` pairs (positive first) with a listwise or pointwise loss."""

    def __init__(self, model: CrossEncoder, loss: nn.Module, group_size: int):
        super().__init__()
        self.model, self.loss, self.group_size = model, loss, group_size

    def forward(self, inputs: dict) -> torch.Tensor:
        logits = self.model(inputs).view(-1, self.group_size)
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
        passages = passages.view(queries.shape[0], self.group_size, -1)
        s_de = self.dual.score_lists(queries, passages)
        s_ce = self.cross(pair_inputs).view(-1, self.group_size)
        return self.loss(s_de, s_ce)
