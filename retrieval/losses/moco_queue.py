"""MoCo-style FIFO queue of past passage embeddings, handed to InfoNCE as extra negatives.

Holds only the buffer; no momentum encoder and no loss arithmetic live here.
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval.losses._checks import check_matrix, shape_of


class MoCoQueue(nn.Module):
    """A ring buffer of at most ``size`` detached ``[dim]`` embeddings, oldest dropped first.

    ``push(e)`` appends the rows of ``e`` ``[n, dim]`` (detached, cast to the queue's dtype,
    moved to its device), overwriting the oldest rows once full; pushing more than ``size``
    rows keeps only the newest ``size``. ``negatives()`` returns the ``[min(pushed, size), dim]``
    contents oldest-first, as a fresh tensor, so a later ``push`` cannot modify a tensor that
    autograd saved for the current step. Use as
    ``InfoNCELoss(...)(q, p, extra_negatives=queue.negatives())`` then ``queue.push(p)``:
    with queued rows ``k_1..k_M`` the candidates of query ``i`` are ``p`` followed by ``k``::

        loss = 1/B * sum_i -log( exp(s(q_i, p_pos(i))/tau)
                                 / (sum_j exp(s(q_i, p_j)/tau) + sum_m exp(s(q_i, k_m)/tau)) )

    The queue is kept in buffers so it follows ``.to(device)`` and ``state_dict``. Under data
    parallelism push the gathered passages so every rank holds the same queue.

    Cites: He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation
    Learning" (CVPR).
    """

    queue: torch.Tensor
    pointer: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"MoCoQueue size and dim must be > 0, got size={size}, dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.register_buffer("queue", torch.zeros(self.size, self.dim, dtype=dtype))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))  # next row to write
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # rows filled so far

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def push(self, embeddings: torch.Tensor) -> None:
        check_matrix(embeddings, "embeddings")
        if embeddings.shape[1] != self.dim:
            raise ValueError(
                f"embeddings {shape_of(embeddings)} do not match the queue's dim {self.dim}"
            )
        rows = embeddings.detach()[-self.size :].to(self.queue.device, self.queue.dtype)
        start = int(self.pointer)
        positions = (start + torch.arange(rows.shape[0], device=self.queue.device)) % self.size
        self.queue[positions] = rows
        self.pointer.fill_((start + rows.shape[0]) % self.size)
        self.count.fill_(min(self.size, int(self.count) + rows.shape[0]))

    def negatives(self) -> torch.Tensor:
        """The queued embeddings ``[n, dim]``, ``n <= size``, oldest first (a copy)."""
        if int(self.count) < self.size:
            return self.queue[: int(self.count)].clone()
        start = int(self.pointer)
        return torch.cat([self.queue[start:], self.queue[:start]], dim=0)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
