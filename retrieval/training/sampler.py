"""Which examples each worker sees at each step, as a pure function of (seed, step, rank).

That makes a resumed run read exactly the batches it would have read without the crash.
"""

from __future__ import annotations

import numpy as np


class StepSampler:
    """Per epoch, a seeded permutation of all examples; step ``s`` takes the next global batch
    of ``world_size * batch_size`` examples and rank ``r`` takes its slice of it. The tail that
    does not fill a global batch is dropped (a different tail each epoch)."""

    def __init__(self, num_examples: int, batch_size: int, world_size: int, seed: int):
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.seed = seed
        self.steps_per_epoch = num_examples // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{num_examples} examples cannot fill one global batch of {self.global_batch} "
                f"({world_size} workers x batch_size {batch_size}); lower batch_size"
            )
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def total_steps(self, epochs: float, max_steps: int | None = None) -> int:
        steps = max(1, int(round(epochs * self.steps_per_epoch)))
        return min(steps, max_steps) if max_steps else steps

    def indices(self, step: int, rank: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            self._epoch = epoch
        start = offset * self.global_batch + rank * self.batch_size
        return self._order[start : start + self.batch_size]
