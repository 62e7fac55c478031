"""The random-number state dropout draws from, captured and put back.

Gradient caching (retrieval/training/grad_cache.py) runs every chunk's forward pass twice, once
without and once with an autograd graph; the second pass must draw the same dropout masks as
the first, or the gradient it produces belongs to other embeddings than the ones the loss saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RngState:
    """The CPU generator's state and, once CUDA is in use, every CUDA device's."""

    cpu: torch.Tensor
    cuda: tuple[torch.Tensor, ...] | None

    @classmethod
    def capture(cls) -> RngState:
        """The state now (CUDA's only if CUDA was initialised: asking would initialise it)."""
        cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda)

    def restore(self) -> None:
        """Make the next random draws the ones that followed :meth:`capture`."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(list(self.cuda))
