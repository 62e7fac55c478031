"""Clean batches: a step sampler whose global batches never hold two examples that share a
positive passage or have the same query text (sentence-transformers issue #3189).

Why: with in-batch and cross-batch negatives, a passage that is one query's positive and
appears in the batch as another query's positive is scored as that other query's negative,
and two copies of a query text teach it that its own positive is a negative. Holds only the
sampler; the masking of known positives among the negatives is retrieval/losses/false_negatives.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from retrieval.training.sampler import StepSampler

Keys = tuple[int, ...]


def collision_keys(queries: Sequence[str], positives: Sequence[np.ndarray]) -> list[Keys]:
    """Per example, what no other example of its batch may share, as small ints: its
    positive corpus rows (``>= 0``) and its query text (``-1 - text id``)."""
    text_ids: dict[str, int] = {}
    keys = []
    for text, rows in zip(queries, positives):
        text_id = text_ids.setdefault(text, len(text_ids))
        keys.append((-1 - text_id, *(int(r) for r in rows)))
    return keys


def pack(order: Iterable[int], keys: Sequence[Keys], size: int, waiting: list[int]):
    """Batches of ``size`` examples without a shared key, in ``order``: an example that
    collides with its batch waits (``waiting``, oldest first) and is offered to every later
    batch before new ones are drawn. Returns the full batches and the examples left over."""
    batches: list[list[int]] = []
    stream: Iterator[int] = iter(order)
    while True:
        batch: list[int] = []
        used: set[int] = set()
        waiting = [i for i in waiting if not _placed(i, batch, used, keys, size)]
        while len(batch) < size and (i := next(stream, None)) is not None:
            if not _placed(i, batch, used, keys, size):
                waiting.append(i)
        if len(batch) < size:  # the order ran dry
            return batches, waiting + batch
        batches.append(batch)


def _placed(i: int, batch: list[int], used: set[int], keys: Sequence[Keys], size: int) -> bool:
    """Put example ``i`` in ``batch`` if there is room and it shares no key with it."""
    if len(batch) == size or not used.isdisjoint(keys[i]):
        return False
    batch.append(i)
    used.update(keys[i])
    return True


class NoDuplicatesStepSampler(StepSampler):
    """:class:`StepSampler` whose every global batch (all ranks together) is clean: no two
    examples share a positive corpus row or an identical query text.

    Epoch ``e`` packs the plain sampler's permutation for ``(seed, e)`` in order (:func:`pack`),
    so on data without collisions its batches are exactly the plain sampler's. Examples that
    collide with a batch are deferred to the next batches, as sentence-transformers'
    NoDuplicatesBatchSampler does.

    ``steps_per_epoch`` is known up front: ``num_examples // global_batch``, as the plain
    sampler (so schedules and ``total_steps`` do not change). When an epoch's packing makes
    fewer clean batches than that (the deferred examples collide among themselves), the epoch
    goes on packing its leftovers, then a further permutation for ``(seed, e, 1)``, ``(seed, e,
    2)``, ... until it has them all; those extra batches are clean too and repeat some examples
    within the epoch. Examples left over at the end wait for no later epoch: each epoch is a
    pure function of ``(seed, e)``, so a resumed run reads the same batches. A data set that
    cannot fill even one clean global batch is an error when the sampler is built.
    """

    def __init__(
        self,
        queries: Sequence[str],
        positives: Sequence[np.ndarray],
        batch_size: int,
        world_size: int,
        seed: int,
    ):
        super().__init__(len(queries), batch_size, world_size, seed)
        self.keys = collision_keys(queries, positives)
        self._batches = self.epoch_batches(0)
        self._epoch = 0

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """``[steps_per_epoch, global_batch]`` example indices of epoch ``epoch``."""
        batches: list[list[int]] = []
        leftover: list[int] = []
        passes = 0
        while len(batches) < self.steps_per_epoch:
            entropy = [self.seed, epoch, passes] if passes else [self.seed, epoch]
            order = np.random.default_rng(entropy).permutation(self.num_examples)
            made, leftover = pack(order.tolist(), self.keys, self.global_batch, leftover)
            if not made:
                raise ValueError(
                    f"no_duplicates: cannot fill a global batch of {self.global_batch} examples "
                    "without a shared positive passage or query text; lower batch_size"
                )
            batches += made
            passes += 1
        return np.asarray(batches[: self.steps_per_epoch], dtype=np.int64)

    def indices(self, step: int, rank: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._batches = self.epoch_batches(epoch)
            self._epoch = epoch
        start = rank * self.batch_size
        return self._batches[offset, start : start + self.batch_size]
