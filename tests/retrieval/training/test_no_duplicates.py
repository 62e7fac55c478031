"""The no-duplicates sampler: every global batch checked pair by pair against the examples."""

from itertools import combinations

import numpy as np
import pytest

from retrieval.training.no_duplicates import NoDuplicatesStepSampler
from retrieval.training.sampler import StepSampler


def colliding_examples() -> tuple[list[str], list[np.ndarray]]:
    """48 examples in 11 groups whose members collide: 4 groups of 4 share their positive, 4
    groups of 4 share their query text, 3 groups share the second of their two positives."""
    queries, positives = [], []
    for i in range(48):
        if i < 16:
            queries.append(f"q{i}")
            positives.append(np.array([1000 + i // 4]))
        elif i < 32:
            queries.append(f"same text {i // 4}")
            positives.append(np.array([i]))
        else:
            queries.append(f"q{i}")
            positives.append(np.array([i, 2000 + i % 3]))
    return queries, positives


def collisions(batch, queries, positives) -> list[tuple[int, int]]:
    """Pairs of examples in ``batch`` with the same query text or a shared positive row."""
    return [
        (a, b)
        for a, b in combinations(batch.tolist(), 2)
        if queries[a] == queries[b] or set(positives[a].tolist()) & set(positives[b].tolist())
    ]


def global_batches(samplers, steps):
    """Each step's global batch as the ranks (one sampler each, as in training) take it."""
    return [np.concatenate([s.indices(step, r) for r, s in enumerate(samplers)]) for step in steps]


@pytest.mark.parametrize("world", [1, 2])
def test_every_global_batch_of_several_epochs_is_clean(world):
    queries, positives = colliding_examples()
    samplers = [NoDuplicatesStepSampler(queries, positives, 4, world, seed=3) for _ in range(world)]
    per_epoch = samplers[0].steps_per_epoch
    assert per_epoch == 48 // (4 * world)  # known up front, as the plain sampler's
    batches = global_batches(samplers, range(4 * per_epoch))
    for batch in batches:
        assert batch.shape == (4 * world,)
        assert collisions(batch, queries, positives) == []
    # Epochs differ, and an epoch sees most examples (a collision defers, it does not drop).
    epochs = [np.concatenate(batches[e * per_epoch : (e + 1) * per_epoch]) for e in range(4)]
    assert len({tuple(e) for e in epochs}) == 4
    assert all(len(set(e.tolist())) >= 48 - 2 * 4 * world for e in epochs)


@pytest.mark.parametrize("world", [1, 2])
def test_the_plain_sampler_puts_collisions_in_a_batch(world):
    """The negative control: the same check on the plain sampler's batches fails."""
    queries, positives = colliding_examples()
    samplers = [StepSampler(48, 4, world, seed=3) for _ in range(world)]
    batches = global_batches(samplers, range(4 * samplers[0].steps_per_epoch))
    assert sum(len(collisions(b, queries, positives)) for b in batches) > 0


def test_same_indices_for_the_same_seed_step_and_rank():
    queries, positives = colliding_examples()
    walked = NoDuplicatesStepSampler(queries, positives, 3, 2, seed=5)
    for step in range(20):
        walked.indices(step, 1)
    resumed = NoDuplicatesStepSampler(queries, positives, 3, 2, seed=5)  # jumps to step 20
    assert np.array_equal(resumed.indices(20, 1), walked.indices(20, 1))
    assert np.array_equal(resumed.indices(3, 0), walked.indices(3, 0))  # back in epoch 0
    other = NoDuplicatesStepSampler(queries, positives, 3, 2, seed=6)
    assert not np.array_equal(other.indices(20, 1), resumed.indices(20, 1))


def test_without_collisions_it_is_the_plain_sampler():
    queries = [f"q{i}" for i in range(30)]
    positives = [np.array([i, 100 + i]) for i in range(30)]
    clean = NoDuplicatesStepSampler(queries, positives, 4, 2, seed=9)
    plain = StepSampler(30, 4, 2, seed=9)
    for step in range(12):
        for rank in range(2):
            assert np.array_equal(clean.indices(step, rank), plain.indices(step, rank))


def test_an_epoch_short_of_clean_batches_is_topped_up_with_clean_ones():
    """6 examples share one text, so a batch of 4 holds at most one of them: the first pass
    makes 2 batches (6 distinct examples, 2 of the shared text), the third comes from more."""
    queries = ["shared"] * 6 + [f"q{i}" for i in range(6)]
    positives = [np.array([i]) for i in range(12)]
    sampler = NoDuplicatesStepSampler(queries, positives, 4, 1, seed=0)
    assert sampler.steps_per_epoch == 3
    for epoch in range(3):
        batches = [sampler.indices(epoch * 3 + s, 0) for s in range(3)]
        for batch in batches:
            assert len(batch) == 4 and collisions(batch, queries, positives) == []
        seen = set(np.concatenate(batches).tolist())
        assert set(range(6, 12)) <= seen  # every distinct-text example in every epoch


def test_data_that_cannot_fill_one_clean_batch_is_a_clear_error():
    queries = ["one text"] * 10
    positives = [np.array([i]) for i in range(10)]
    with pytest.raises(ValueError, match="cannot fill a global batch of 4 examples"):
        NoDuplicatesStepSampler(queries, positives, 2, 2, seed=0)
