import numpy as np
import pytest

from retrieval.training.sampler import StepSampler


def test_ranks_split_each_global_batch_and_an_epoch_covers_distinct_examples():
    samplers = [StepSampler(50, batch_size=4, world_size=3, seed=7) for _ in range(3)]
    assert samplers[0].steps_per_epoch == 4  # 50 // 12, the tail of 2 is dropped
    seen = [
        i for step in range(4) for rank, s in enumerate(samplers) for i in s.indices(step, rank)
    ]
    assert len(seen) == len(set(seen)) == 48


def test_order_is_a_pure_function_of_seed_and_step():
    a = StepSampler(30, 5, 2, seed=1)
    b = StepSampler(30, 5, 2, seed=1)
    late = b.indices(7, 1)  # b jumps straight to step 7, as a resumed run does
    for step in range(7):
        a.indices(step, 1)
    assert np.array_equal(a.indices(7, 1), late)
    assert not np.array_equal(StepSampler(30, 5, 2, seed=2).indices(7, 1), late)


def test_epochs_reshuffle():
    s = StepSampler(20, 10, 1, seed=0)
    assert not np.array_equal(s.indices(0, 0), s.indices(2, 0))
    assert sorted(np.concatenate([s.indices(2, 0), s.indices(3, 0)])) == list(range(20))


def test_total_steps_from_epochs_and_cap():
    s = StepSampler(100, 10, 2, seed=0)
    assert s.total_steps(2.0) == 10
    assert s.total_steps(2.0, max_steps=3) == 3


def test_too_few_examples_for_one_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot fill one global batch of 64"):
        StepSampler(50, 32, 2, seed=0)
