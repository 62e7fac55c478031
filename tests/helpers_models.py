"""Models derived from a test's tiny model, saved into its tmp folder."""

from __future__ import annotations

import torch

from retrieval.models import CrossEncoder, DualEncoder


def perturbed_copy(folder, out, seed: int, **overrides) -> DualEncoder:
    """``folder``'s model (with ``overrides`` of its settings) with Gaussian noise (sd 0.05) on
    every weight, saved to ``out``: a stand-in for one more fine-tune of the same checkpoint."""
    model = DualEncoder.from_pretrained(folder, **overrides)
    _add_noise(model, seed)
    model.save(out)
    return model


def perturbed_cross_encoder(folder, out, seed: int) -> CrossEncoder:
    """A cross-encoder started from ``folder`` (its new head drawn with ``seed``), Gaussian noise
    (sd 0.05) on every weight, saved to ``out``: a stand-in for one fine-tuned re-ranker."""
    torch.manual_seed(seed)
    model = CrossEncoder.from_pretrained(folder)
    _add_noise(model, seed)
    model.save(out)
    return model


def _add_noise(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
