"""Sentence-BERT's classification objective: a softmax classifier over (u, v, |u - v|) (NLI).

Holds only this loss and its classifier head; the encoder that makes u and v is the caller's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import check_matrix, check_same_shape, shape_of


class SBERTSoftmaxLoss(nn.Module):
    """Cross-entropy of a linear classifier over the concatenation ``[u, v, |u - v|]``.

    Inputs: ``u`` ``[N, d]`` and ``v`` ``[N, d]`` (the two sentences of pair ``i``) and
    ``labels`` ``[N]`` integers in ``0..num_labels-1`` (NLI: entailment, neutral,
    contradiction). With the head's ``W`` ``[num_labels, 3d]`` and ``b`` ``[num_labels]``::

        logits_i = W [u_i, v_i, |u_i - v_i|] + b
        loss     = 1/N * sum_i -log softmax(logits_i)[labels_i]

    The head is trained with the encoder and then dropped: it is part of this loss module,
    not of the DualEncoder, so the exported model (``DualEncoder.save``, the
    sentence-transformers folder) holds the encoder alone, as in the paper. ``dim=None``
    sizes the head from the first batch.

    Cites: Reimers and Gurevych 2019, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks" (EMNLP), section 3, classification objective (sentence-transformers'
    SoftmaxLoss).
    """

    def __init__(self, dim: int | None = None, num_labels: int = 3) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        self.num_labels = int(num_labels)
        self.classifier = (
            nn.LazyLinear(num_labels) if dim is None else nn.Linear(3 * dim, num_labels)
        )

    def logits(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``[N, num_labels]`` classifier scores of the pairs, in ``u``'s precision (the head
        may be bf16 under DeepSpeed while ``u`` and ``v`` arrive in float32)."""
        features = torch.cat([u, v, (u - v).abs()], dim=-1)
        return self.classifier(features.to(self.classifier.weight.dtype)).to(u.dtype)

    def forward(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_matrix(u, "u")
        check_same_shape(u, "u", v, "v")
        if labels.shape != (u.shape[0],):
            raise ValueError(f"labels {shape_of(labels)} must be [N] for a {shape_of(u)}")
        return F.cross_entropy(self.logits(u, v), labels.long())

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}"
