"""torch.distributed helpers that also work in one plain process: rank, world size, gathers.

The one home of the differentiable all-gather; no losses or training-loop logic live here.
"""

from __future__ import annotations

import socket
from typing import Any

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """True when a default process group exists (torchrun / DeepSpeed / a test's gloo group)."""
    return dist.is_available() and dist.is_initialized()


def world_size(group: Any = None) -> int:
    """Number of workers in ``group`` (the default group when None); 1 without a group."""
    return dist.get_world_size(group) if is_initialized() else 1


def rank(group: Any = None) -> int:
    """This worker's rank in ``group`` (the default group when None); 0 without a group."""
    return dist.get_rank(group) if is_initialized() else 0


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all_gather rank-major along dim 0. Backward: all_reduce(SUM), own slice.

    Why the sum: each rank ``r`` computes a loss ``L_r`` on its local queries but against every
    rank's passages, so the gathered rows that came from rank ``s`` feed all ``L_r``. The
    gradient rank ``s`` must push into its encoder is ``sum_r dL_r / dx_s``; summing the
    gathered-tensor gradients over ranks and keeping this rank's slice gives exactly that. With
    ``L = 1/W sum_r L_r`` and DDP/DeepSpeed averaging parameter gradients over ranks, the
    averaged gradient is then ``dL/dtheta`` of the one-process loss on the concatenated batch.
    (Keeping only the local gradient, or averaging instead of summing, would drop or shrink
    the cross-rank terms.)
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        tensor = tensor.contiguous()
        ctx.group = group
        ctx.rows = tensor.shape[0]
        ctx.rank = dist.get_rank(group)
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor, group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()  # all_reduce works in place on autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None


def all_gather_with_grad(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``tensor`` ``[n, ...]`` from every rank into ``[world*n, ...]``, rank-major.

    Rows ``r*n .. r*n+n-1`` come from rank ``r``; this rank's rows keep their autograd
    history and gradients reaching the other ranks' rows are sent back to their owners (see
    :class:`_AllGatherWithGrad`). Every rank must pass the same shape and must call
    ``backward`` (the backward is a collective). Without a process group, or with one worker,
    returns ``tensor`` itself.
    """
    if world_size(group) == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor, group)


def all_gather(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``tensor`` ``[n, ...]`` from every rank into ``[world*n, ...]``, rank-major,
    without gradient: for what travels beside the embeddings (their corpus rows, masks).
    Booleans travel as uint8 (not every backend sends bool). One process: ``tensor`` itself."""
    if world_size(group) == 1:
        return tensor
    sent = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
    parts = [torch.empty_like(sent) for _ in range(world_size(group))]
    dist.all_gather(parts, sent.contiguous(), group=group)
    return torch.cat(parts, dim=0).to(tensor.dtype)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: for a one-process group's MASTER_PORT and for tests
    that start process groups or Ray nodes of their own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
