"""The sentence-pair losses (cosine_mse, sbert_softmax, circle, multilabel_ce, and CoSENT's
formula) against their formulas written out with explicit loops, in float64 on small tensors.
"""

from __future__ import annotations

import math

import pytest
import torch

from retrieval.losses import (
    LOSSES,
    CircleLoss,
    CoSENTLoss,
    CosineMSELoss,
    MultiLabelCELoss,
    SBERTSoftmaxLoss,
    build_loss,
)

DOUBLE = torch.float64


def _randn(*shape: int, seed: int, grad: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DOUBLE).requires_grad_(grad)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


def _labels(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# ---- reference formulas: plain loops, no library loss code ---------------------------------


def _ref_cosine_mse(a, b, scores, low, high):
    total = 0.0
    for i in range(a.shape[0]):
        target = (float(scores[i]) - low) / (high - low)
        total = total + (_cos(a[i], b[i]) - target) ** 2
    return total / a.shape[0]


def _ref_sbert_softmax(u, v, labels, weight, bias):
    total = 0.0
    for i in range(u.shape[0]):
        features = torch.cat([u[i], v[i], (u[i] - v[i]).abs()])
        logits = [(weight[k] * features).sum() + bias[k] for k in range(weight.shape[0])]
        log_norm = torch.log(sum(torch.exp(x) for x in logits))
        total = total + log_norm - logits[int(labels[i])]
    return total / u.shape[0]


def _ref_circle(scores, labels, m, gamma):
    total = 0.0
    for b in range(scores.shape[0]):
        pos_sum, neg_sum = 0.0, 0.0
        for j in range(scores.shape[1]):
            s = scores[b, j]
            if labels[b, j]:
                alpha = max(0.0, 1 + m - float(s.detach()))
                pos_sum = pos_sum + torch.exp(-gamma * alpha * (s - (1 - m)))
            else:
                alpha = max(0.0, float(s.detach()) + m)
                neg_sum = neg_sum + torch.exp(gamma * alpha * (s - m))
        total = total + torch.log(1 + torch.as_tensor(neg_sum * pos_sum, dtype=DOUBLE))
    return total / scores.shape[0]


def _ref_multilabel_ce(scores, labels, scale):
    total = 0.0
    for b in range(scores.shape[0]):
        neg, pos = 1.0, 1.0
        for j in range(scores.shape[1]):
            s = scale * scores[b, j]
            if labels[b, j]:
                pos = pos + torch.exp(-s)
            else:
                neg = neg + torch.exp(s)
        total = total + torch.log(torch.as_tensor(neg)) + torch.log(torch.as_tensor(pos))
    return total / scores.shape[0]


def _ref_cosent(a, b, labels, lam):
    total = 1.0
    for i in range(a.shape[0]):
        for j in range(a.shape[0]):
            if labels[i] > labels[j]:
                total = total + torch.exp(lam * (_cos(a[j], b[j]) - _cos(a[i], b[i])))
    return torch.log(torch.as_tensor(total, dtype=DOUBLE))


def _same_value_and_gradient(loss_fn, reference_fn, inputs: list[torch.Tensor]) -> None:
    ours = loss_fn()
    ours_grads = torch.autograd.grad(ours, inputs)
    reference = reference_fn()
    reference_grads = torch.autograd.grad(reference, inputs)
    torch.testing.assert_close(ours, reference.to(DOUBLE), rtol=1e-10, atol=1e-12)
    for mine, theirs in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


# ---- the tests --------------------------------------------------------------------------------


def test_cosine_mse_matches_formula_with_scores_scaled_from_0_5():
    a, b = _randn(5, 4, seed=1), _randn(5, 4, seed=2)
    scores = torch.tensor([0.0, 1.5, 5.0, 3.2, 4.4], dtype=DOUBLE)
    loss = CosineMSELoss(min_score=0.0, max_score=5.0)
    _same_value_and_gradient(
        lambda: loss(a, b, scores), lambda: _ref_cosine_mse(a, b, scores, 0.0, 5.0), [a, b]
    )


def test_cosine_mse_is_zero_when_cosines_equal_the_scaled_scores():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DOUBLE)
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=DOUBLE)  # cosines 1 and 0
    assert float(CosineMSELoss(0, 5)(a, b, torch.tensor([5.0, 0.0], dtype=DOUBLE))) == 0.0
    assert float(CosineMSELoss(0, 5)(a, b, torch.tensor([0.0, 5.0], dtype=DOUBLE))) == 1.0


def test_sbert_softmax_matches_formula_over_u_v_and_abs_difference():
    u, v = _randn(6, 4, seed=3), _randn(6, 4, seed=4)
    labels = torch.tensor([0, 1, 2, 2, 0, 1])
    loss = SBERTSoftmaxLoss(dim=4, num_labels=3).double()
    weight, bias = loss.classifier.weight, loss.classifier.bias
    assert weight.shape == (3, 12)
    _same_value_and_gradient(
        lambda: loss(u, v, labels),
        lambda: _ref_sbert_softmax(u, v, labels, weight, bias),
        [u, v, weight, bias],
    )


def test_sbert_softmax_head_is_sized_from_the_first_batch_and_is_not_the_encoders():
    loss = SBERTSoftmaxLoss(num_labels=2).double()
    u, v = _randn(3, 5, seed=5), _randn(3, 5, seed=6)
    loss(u, v, torch.tensor([0, 1, 1]))
    assert loss.classifier.weight.shape == (2, 15)
    assert set(dict(loss.named_parameters())) == {"classifier.weight", "classifier.bias"}


def test_circle_matches_formula_with_several_positives_per_row():
    scores = torch.rand(3, 6, generator=torch.Generator().manual_seed(7), dtype=DOUBLE) * 2 - 1
    scores.requires_grad_(True)
    labels = _labels([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 1]])
    loss = CircleLoss(m=0.25, gamma=8.0)
    _same_value_and_gradient(
        lambda: loss(scores, labels), lambda: _ref_circle(scores, labels, 0.25, 8.0), [scores]
    )


def test_circle_row_without_negatives_adds_zero_and_keeps_gradients_finite():
    scores = torch.tensor([[0.9, 0.2], [0.5, -0.3]], dtype=DOUBLE, requires_grad=True)
    labels = _labels([[1, 1], [1, 0]])  # row 0 has no negative
    loss = CircleLoss(m=0.25, gamma=4.0)(scores, labels)
    loss.backward()
    expected = _ref_circle(scores.detach()[1:], labels[1:], 0.25, 4.0) / 2
    torch.testing.assert_close(loss.detach(), expected)
    assert torch.isfinite(scores.grad).all() and (scores.grad[0] == 0).all()


def test_circle_weights_are_not_differentiated():
    # with alpha detached the gradient of one positive term is -gamma * alpha_p * sigmoid(...)
    s = torch.tensor([[0.4, -0.2]], dtype=DOUBLE, requires_grad=True)
    m, gamma = 0.25, 2.0
    CircleLoss(m, gamma)(s, _labels([[1, 0]])).backward()
    sp, sn = 0.4, -0.2
    ap, an = 1 + m - sp, sn + m
    z = gamma * an * (sn - m) - gamma * ap * (sp - (1 - m))
    expected = -gamma * ap / (1 + math.exp(-z))
    assert float(s.grad[0, 0]) == pytest.approx(expected, rel=1e-12)


def test_multilabel_ce_matches_formula():
    scores = _randn(4, 5, seed=8)
    labels = _labels([[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]])
    loss = MultiLabelCELoss(scale=3.0)
    _same_value_and_gradient(
        lambda: loss(scores, labels), lambda: _ref_multilabel_ce(scores, labels, 3.0), [scores]
    )


def test_multilabel_ce_is_small_when_positives_high_and_negatives_low():
    scores = torch.tensor([[20.0, -20.0, -20.0]], dtype=DOUBLE)
    assert float(MultiLabelCELoss()(scores, _labels([[1, 0, 0]]))) < 1e-8
    assert float(MultiLabelCELoss()(scores, _labels([[0, 1, 1]]))) > 39


def test_cosent_is_the_formula_with_lambda_20_by_default():
    a, b = _randn(6, 4, seed=9), _randn(6, 4, seed=10)
    labels = torch.tensor([5.0, 3.2, 3.2, 0.0, 4.1, 1.0], dtype=DOUBLE)
    loss = CoSENTLoss()
    assert loss.scale == 20.0
    _same_value_and_gradient(
        lambda: loss(a, b, labels), lambda: _ref_cosent(a, b, labels, 20.0), [a, b]
    )


@pytest.mark.parametrize(
    "loss,args",
    [
        (CosineMSELoss(), (torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(2))),
        (CircleLoss(), (torch.zeros(2, 3), torch.zeros(2, 4))),
        (MultiLabelCELoss(), (torch.zeros(2, 3), torch.zeros(3))),
        (SBERTSoftmaxLoss(3), (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))),
    ],
)
def test_shape_errors_name_the_shapes(loss, args):
    with pytest.raises(ValueError, match=r"\[\d"):
        loss(*args)


def test_registered_under_their_config_names():
    expected = {
        "cosine_mse": CosineMSELoss,
        "sbert_softmax": SBERTSoftmaxLoss,
        "circle": CircleLoss,
        "multilabel_ce": MultiLabelCELoss,
    }
    for name, cls in expected.items():
        assert LOSSES[name] is cls
        assert isinstance(build_loss(name), cls)
    assert build_loss("circle", m=0.1, gamma=32).gamma == 32
