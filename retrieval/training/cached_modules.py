"""The dual and joint training modules with gradient caching (retrieval/training/grad_cache.py).

Subclasses, not wrappers: the same submodules, parameter names and state-dict keys as
DualTrainingModule and JointTrainingModule, and their own loss methods, so checkpoints, export
and the loop's logging (``engine.module.loss``) do not change; only forward encodes in chunks.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from retrieval.losses import MoCoQueue
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.config import GradCacheConfig, JointGradCacheConfig
from retrieval.training.grad_cache import Encoding, cached_loss, sparse_embedding_gradients
from retrieval.training.modules import DualTrainingModule, JointTrainingModule


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class CachedDualTrainingModule(DualTrainingModule):
    def __init__(
        self,
        model: DualEncoder,
        loss: nn.Module,
        queue: MoCoQueue | None,
        chunks: GradCacheConfig,
    ):
        super().__init__(model, loss, queue)
        self.chunks = chunks

    def forward(
        self,
        query_inputs: dict,
        passage_inputs: dict,
        false_negatives: dict | None = None,
        teacher: dict | None = None,
    ) -> torch.Tensor:
        encodings = [
            Encoding(self.model.encode_query, query_inputs, self.chunks.query_chunk),
            Encoding(self.model.encode_passage, passage_inputs, self.chunks.passage_chunk),
        ]
        loss_fn = partial(self.embedding_loss, false_negatives=false_negatives, teacher=teacher)
        with sparse_embedding_gradients(self):
            return cached_loss(encodings, loss_fn, trainable(self), self.chunks.keep_last)


class CachedJointTrainingModule(JointTrainingModule):
    def __init__(
        self,
        dual: DualEncoder,
        cross: CrossEncoder,
        loss: nn.Module,
        group_size: int,
        chunks: JointGradCacheConfig,
    ):
        super().__init__(dual, cross, loss, group_size)
        self.chunks = chunks

    def forward(self, query_inputs: dict, passage_inputs: dict, pair_inputs: dict) -> torch.Tensor:
        encodings = [
            Encoding(self.dual.encode_query, query_inputs, self.chunks.query_chunk),
            Encoding(self.dual.encode_passage, passage_inputs, self.chunks.passage_chunk),
            Encoding(self.cross, pair_inputs, self.chunks.pair_chunk),
        ]
        with sparse_embedding_gradients(self):
            return cached_loss(encodings, self.list_loss, trainable(self), self.chunks.keep_last)


def with_grad_cache(module: nn.Module, chunks: GradCacheConfig) -> nn.Module:
    """The cached twin of a dual or joint training module, over the very same submodules."""
    if isinstance(module, JointTrainingModule):
        return CachedJointTrainingModule(
            module.dual, module.cross, module.loss, module.group_size, chunks
        )
    if isinstance(module, DualTrainingModule):
        return CachedDualTrainingModule(module.model, module.loss, module.queue, chunks)
    raise TypeError(f"gradient caching does not support {type(module).__name__}")
