"""Inference precision: float32 (exact) or bfloat16 where the hardware multiplies it natively.

Encoding and cross-encoder scoring are matrix products end to end; on CPUs with AVX512-BF16 or
AMX and on GPUs from Ampere on, bf16 runs them 2-3x faster at cosine > 0.9999 to fp32 vectors
(benchmarks/README.md). Elsewhere bf16 is emulated and slower, so ``auto`` falls back to fp32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "auto")


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 natively: CUDA GPUs from Ampere (compute 8.0) on,
    CPUs with AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16``; ``auto`` is bf16 where :func:`bf16_is_fast`, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def bf16_copy(module: nn.Module) -> nn.Module:
    """A bfloat16 copy of ``module`` in eval mode; the caller's module is left untouched."""
    return copy.deepcopy(module).to(torch.bfloat16).eval()
