"""listwise_ce_kl (retrieval/losses/teacher_kl.py) against its formula written out one list at a
time: the listwise CE over every list plus kl_weight x the mean KL(softmax(teacher / T) ||
softmax(logits)) over the lists whose teacher scores are all known; a list with a NaN score
(a positive the retriever did not return) is left to the CE; the teacher gets no gradient.
Config: kind cross takes it, with random negatives refused in one line."""

from __future__ import annotations

import math

import pytest
import torch

from retrieval.losses import LOSSES, ListwiseCETeacherKLLoss, build_loss
from retrieval.training.config import LOSSES_BY_KIND, validate_train_config
from tests.retrieval.training.test_config import _load as one_line_error

DOUBLE = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DOUBLE).requires_grad_(True)


def by_hand(logits, teacher, kl_weight: float, temperature: float) -> torch.Tensor:
    """CE of each list averaged over all lists, plus the KL of each fully scored list, one
    passage at a time, averaged over those lists."""
    ces, kls = [], []
    for z, t in zip(logits, teacher.detach()):
        log_norm = torch.logsumexp(z, dim=0)
        ces.append(log_norm - z[0])
        if not all(math.isfinite(float(v)) for v in t):
            continue
        t = t / temperature
        t_norm = torch.logsumexp(t, dim=0)
        kl = sum(torch.exp(t[j] - t_norm) * ((t[j] - t_norm) - (z[j] - log_norm))
                 for j in range(len(z)))  # fmt: skip
        kls.append(kl)
    loss = sum(ces) / len(ces)
    return loss + kl_weight * sum(kls) / len(kls) if kls else loss


def test_a_small_case_worked_by_hand():
    # logits equal to the teacher's (T = 1): KL 0, the loss is the CE alone
    # CE of [2, 0]: log(e^2 + 1) - 2 = log(1 + e^-2)
    logits = torch.tensor([[2.0, 0.0]])
    assert ListwiseCETeacherKLLoss()(logits, logits.clone()).item() == pytest.approx(
        math.log(1 + math.exp(-2))
    )
    # teacher uniform over 2: KL(U || softmax([2, 0])) = -log 2 - 1/2 (log p0 + log p1)
    p0, p1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))
    kl = -math.log(2) - 0.5 * (math.log(p0) + math.log(p1))
    loss = ListwiseCETeacherKLLoss(kl_weight=0.5)(logits, torch.zeros(1, 2))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)) + 0.5 * kl)


@pytest.mark.parametrize("weight, temperature", [(1.0, 1.0), (0.3, 0.05), (2.0, 4.0)])
def test_equals_the_formula_written_out(weight, temperature):
    logits, teacher = _randn(4, 6, seed=1), _randn(4, 6, seed=2)
    loss = ListwiseCETeacherKLLoss(weight, temperature)(logits, teacher)
    assert torch.allclose(loss, by_hand(logits, teacher, weight, temperature), atol=1e-12)


def test_a_list_without_every_teacher_score_is_left_to_the_ce():
    logits, teacher = _randn(4, 5, seed=3), _randn(4, 5, seed=4).detach().clone()
    teacher[1, 0] = float("nan")  # q1's positive was not in the retriever's list
    loss = ListwiseCETeacherKLLoss(1.0, 0.5)(logits, teacher)
    assert torch.isfinite(loss)
    assert torch.allclose(loss, by_hand(logits, teacher, 1.0, 0.5), atol=1e-12)
    # the KL averages over the 3 scored lists, not 4; the CE over all 4
    ce = by_hand(logits, teacher, 0.0, 1.0)
    kl_of_scored = by_hand(logits[[0, 2, 3]], teacher[[0, 2, 3]], 1.0, 0.5) - by_hand(
        logits[[0, 2, 3]], teacher[[0, 2, 3]], 0.0, 0.5
    )
    assert torch.allclose(loss, ce + kl_of_scored, atol=1e-12)
    # every list unscored: the CE alone, and a weight of 0 gives the CE too
    nan = torch.full_like(teacher, float("nan"))
    assert torch.allclose(ListwiseCETeacherKLLoss()(logits, nan), ce, atol=1e-12)
    assert torch.allclose(ListwiseCETeacherKLLoss(0.0)(logits, teacher), ce, atol=1e-12)


def test_the_teacher_gets_no_gradient_and_a_step_moves_the_logits_towards_it():
    logits, teacher = _randn(3, 5, seed=5), _randn(3, 5, seed=6)
    loss_fn = ListwiseCETeacherKLLoss(kl_weight=10.0)  # the KL dominates
    loss = loss_fn(logits, teacher)
    grad_logits, grad_teacher = torch.autograd.grad(loss, (logits, teacher), allow_unused=True)
    assert grad_teacher is None
    stepped = (logits - 0.1 * grad_logits).detach()
    kl = lambda z: by_hand(z, teacher, 1.0, 1.0) - by_hand(z, teacher, 0.0, 1.0)  # noqa: E731
    assert kl(stepped) < kl(logits.detach())


def test_registered_and_taken_by_kind_cross_only():
    assert LOSSES["listwise_ce_kl"] is ListwiseCETeacherKLLoss
    assert [k for k, losses in LOSSES_BY_KIND.items() if "listwise_ce_kl" in losses] == ["cross"]
    args = {"kl_weight": 0.5, "temperature": 0.05}
    raw = {"kind": "cross", "model": "m", "output_dir": "o", "data": {"tables": "t"},
           "loss": "listwise_ce_kl", "loss_args": args}  # fmt: skip
    config = validate_train_config(raw)
    loss = build_loss(config.loss, **config.loss_args)
    assert (loss.kl_weight, loss.temperature) == (0.5, 0.05)


def test_random_negatives_are_refused_in_one_line(tmp_path):
    message = one_line_error(
        tmp_path, {"kind": "cross", "loss": "listwise_ce_kl", "random_negatives": True}
    )
    assert "random_negatives" in message and "teacher score" in message


@pytest.mark.parametrize("args", [{"kl_weight": -1.0}, {"temperature": 0.0}])
def test_a_negative_weight_or_zero_temperature_is_refused(args):
    with pytest.raises(ValueError, match="kl_weight must be >= 0 and temperature > 0"):
        ListwiseCETeacherKLLoss(**args)
