"""A training-only projection head between the sentence encoder and a pair loss (SimCLR).

Holds only the MLP; it lives in the training module, never in the DualEncoder, so export drops it.
"""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """SimCLR's projection head ``g`` on the encoder's vectors ``h`` ``[N, dim]``::

        z = W2 relu(W1 h + b1) + b2      W1: [hidden_dim, dim], W2: [out_dim, hidden_dim]

    The loss reads ``z``; the exported model keeps ``h`` (Chen et al. found ``h`` transfers
    better than ``z``, which the loss shapes to its own task).

    Cites: Chen, Kornblith, Norouzi and Hinton 2020, "A Simple Framework for Contrastive
    Learning of Visual Representations" (ICML), section 2.1 and 4.2; SimCSE (Gao et al. 2021)
    likewise trains with an MLP over the [CLS] vector and evaluates without it.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, out_dim: int | None = None):
        super().__init__()
        hidden_dim, out_dim = hidden_dim or dim, out_dim or dim
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)
        )

    @property
    def out_dim(self) -> int:
        return self.net[-1].out_features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
