import pytest
import torch

from retrieval.models.pooling import pool


@pytest.fixture
def states():
    # batch of 2, 3 tokens, dim 2; the second sequence has one padding token.
    last = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[2.0, 0.0], [4.0, 2.0], [100.0, 100.0]]]
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return last, mask


def test_cls_takes_first_token(states):
    last, mask = states
    assert torch.equal(pool("cls", last, mask), torch.tensor([[1.0, 2.0], [2.0, 0.0]]))


def test_mean_ignores_padding(states):
    last, mask = states
    # (1+3+5)/3=3, (2+4+6)/3=4 ; (2+4)/2=3, (0+2)/2=1
    assert torch.allclose(pool("mean", last, mask), torch.tensor([[3.0, 4.0], [3.0, 1.0]]))


def test_weighted_mean_weights_by_position(states):
    last, mask = states
    # weights 1,2,3: (1+6+15)/6 = 11/3, (2+8+18)/6 = 14/3 ; weights 1,2: (2+8)/3, (0+4)/3
    expected = torch.tensor([[11 / 3, 14 / 3], [10 / 3, 4 / 3]])
    assert torch.allclose(pool("weighted_mean", last, mask), expected)


def test_first_last_avg_averages_first_and_last_layer(states):
    last, mask = states
    first = torch.zeros_like(last)
    embeddings = torch.full_like(last, 7.0)  # layer 0 (embeddings) must be ignored
    pooled = pool("first_last_avg", last, mask, hidden_states=(embeddings, first, last))
    assert torch.allclose(pooled, torch.tensor([[1.5, 2.0], [1.5, 0.5]]))


def test_unknown_mode_is_a_clear_error(states):
    with pytest.raises(ValueError, match="unknown pooling mode 'max'"):
        pool("max", *states)
