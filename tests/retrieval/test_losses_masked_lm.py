"""MaskedLMLoss: the mean cross-entropy of the original tokens at the masked positions."""

import math

import pytest
import torch

from retrieval.losses import LOSSES, MaskedLMLoss, build_loss


def test_it_is_the_mean_negative_log_probability_of_each_label():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    by_hand = [
        -(2.0 - math.log(math.exp(2.0) + 2.0)),
        -(1.0 - math.log(1.0 + math.exp(1.0) + math.exp(3.0))),
    ]
    assert MaskedLMLoss()(logits, labels).item() == pytest.approx(sum(by_hand) / 2, rel=1e-12)
    assert LOSSES["masked_lm"] is MaskedLMLoss and isinstance(build_loss("masked_lm"), MaskedLMLoss)


def test_nothing_masked_is_zero_with_a_graph_and_a_bad_shape_is_one_line():
    logits = torch.zeros((0, 5), requires_grad=True)
    loss = MaskedLMLoss()(logits, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match=r"\[4, 5\] and \[3\]") as err:
        MaskedLMLoss()(torch.zeros(4, 5), torch.zeros(3, dtype=torch.long))
    assert "\n" not in str(err.value)
