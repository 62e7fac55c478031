"""The float32 master weights DeepSpeed keeps under bf16/fp16, for export.

Under mixed precision the module the engine runs is a bf16 (or fp16) copy; the optimizer keeps
the float32 weights it updates, and each step rounds them into that copy. Saving the module
would throw away the low 16 bits of every weight, so the exported model is the master copy.
Where each optimizer keeps it: ZeRO 1-3 and BF16_Optimizer answer DeepSpeed's
``safe_get_full_fp32_param`` (a collective: every rank calls it, in the same order); ZeRO 0
with a bf16/fp16 module wraps the optimizer in FP16_(Unfused)Optimizer, whose ``fp32_groups``
(or flat ``fp32_groups_flat``) lie beside ``fp16_groups``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LOW_PRECISION = (torch.bfloat16, torch.float16)


def trains_in_low_precision(engine) -> bool:
    return bool(engine.bfloat16_enabled() or engine.fp16_enabled())


def master_weights(engine) -> dict[str, torch.Tensor] | None:
    """``{parameter name: float32 CPU tensor}`` of ``engine.module``'s parameters, or None when
    the module trains in float32 (its own weights are the master copy). Every rank must call
    this (ZeRO gathers). A parameter the optimizer does not train has no master: its module
    copy is widened, except a ZeRO-3 partition, which is left out."""
    if not trains_in_low_precision(engine):
        return None
    from deepspeed.utils import safe_get_full_fp32_param

    zero0 = _zero0_masters(engine.optimizer)
    masters = {}
    for name, param in engine.module.named_parameters():
        full = safe_get_full_fp32_param(param)
        if full is None:
            full = zero0.get(id(param))
        if full is None and param.numel() == _shape(param).numel():
            full = param  # frozen: no master copy exists
        if full is not None:
            masters[name] = full.detach().float().cpu().view(_shape(param))
    return masters


def _shape(param: nn.Parameter) -> torch.Size:
    return getattr(param, "ds_shape", param.shape)  # ZeRO-3 keeps an empty placeholder


def _zero0_masters(optimizer) -> dict[int, torch.Tensor]:
    """``{id(low-precision param): its float32 master}`` of FP16_(Unfused)Optimizer."""
    low_groups = getattr(optimizer, "fp16_groups", None)
    if not low_groups:
        return {}
    if hasattr(optimizer, "fp32_groups"):  # unfused: one master tensor per parameter
        return {
            id(p): m
            for group, masters in zip(low_groups, optimizer.fp32_groups)
            for p, m in zip(group, masters)
        }
    found = {}
    for group, flat in zip(low_groups, getattr(optimizer, "fp32_groups_flat", [])):
        offset = 0
        for p in group:  # fused: the group's masters in one flat tensor, in parameter order
            found[id(p)] = flat[offset : offset + p.numel()]
            offset += p.numel()
    return found


@contextmanager
def weights_swapped_in(module: nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the block, each named parameter of ``module`` holds ``weights[name]`` (their
    dtype too), so that saving the module writes them; the module's own tensors come back on
    exit, also on error. HF configs that record a dtype say the saved one."""
    params = dict(module.named_parameters())
    saved = {name: params[name].data for name in weights}
    configs = [m.config for m in module.modules() if hasattr(getattr(m, "config", None), "dtype")]
    dtypes = [c.dtype for c in configs]
    try:
        for name, tensor in weights.items():
            params[name].data = tensor
        for config in configs:
            config.dtype = torch.float32
        yield
    finally:
        for name, tensor in saved.items():
            params[name].data = tensor
        for config, dtype in zip(configs, dtypes):
            config.dtype = dtype
