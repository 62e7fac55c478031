"""Scores, logits and losses in float32, whatever precision the encoders run in.

Under DeepSpeed bf16 the whole training module is bf16, so embeddings and re-ranker logits
leave the models in bf16. bf16 keeps 8 significant bits: an unnormalised dot product of 64-256
(configs/msmarco.yaml: CLS vectors, temperature 1) moves in steps of 0.5-1.0, which blurs the
softmax over thousands of cross-batch candidates. The training modules therefore cast model
outputs up with :func:`as_fp32` before any similarity, temperature, softmax or KL; the cast is
differentiable, so the gradients reach the bf16 encoders as before.
"""

from __future__ import annotations

import torch


def as_fp32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Float32 views of floating-point ``tensors`` (float64 stays float64: tests use it)."""
    return tuple(t if t.dtype == torch.float64 else t.float() for t in tensors)
