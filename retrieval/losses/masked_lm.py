"""Masked language modelling: cross-entropy of the original token at each masked position.

Holds only the loss; which positions are masked is the collator's, the logits the model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses._checks import shape_of


class MaskedLMLoss(nn.Module):
    """Mean cross-entropy over the masked tokens of a batch.

    Inputs: ``logits`` ``[N, V]``, the vocabulary scores at the ``N`` masked positions only
    (the caller selects them before the vocabulary projection, which is the expensive part),
    and ``labels`` ``[N]``, the original token ids there::

        loss = 1/N * sum_i -log softmax(logits_i)[labels_i]      (0 when N = 0)

    Cites: Devlin et al. 2019, "BERT" (the MLM objective); Xiao et al. 2022, "RetroMAE:
    Pre-Training Retrieval-oriented Language Models Via Masked Auto-Encoder" (EMNLP), which
    sums this loss of the encoder and of its decoder.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
            raise ValueError(
                f"logits [N, V] and labels [N] expected, got {shape_of(logits)} and "
                f"{shape_of(labels)}"
            )
        if labels.numel() == 0:  # nothing masked: no signal, but keep the graph connected
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels)
