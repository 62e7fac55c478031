"""Running a model for evaluation in the middle of training without changing the training: eval
mode (no dropout) and no autograd inside, each submodule's own train/eval mode back after, and
every random stream training draws from (torch CPU and CUDA, numpy's and Python's global ones)
as it was, so a run with evaluation ends with the weights of the same run without it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from retrieval.training.rng_state import RngState


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    torch_state, numpy_state = RngState.capture(), np.random.get_state()
    python_state = random.getstate()
    try:
        module.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        torch_state.restore()
        np.random.set_state(numpy_state)
        random.setstate(python_state)
