"""MarginMSE (retrieval/losses/margin_mse.py) against its formula written out by hand: the
squared gap between student and teacher margins (positive minus each negative), averaged over
negatives and queries; the teacher gets no gradient; a gradient step moves every student margin
towards the teacher's; train_joint's form adds the re-ranker's listwise CE, which alone trains
the re-ranker. Config: kinds dual and joint take it, others refuse it in one line."""

from __future__ import annotations

import pytest
import torch

from retrieval.losses import LOSSES, JointMarginMSELoss, MarginMSELoss, build_loss
from retrieval.training.config import (
    LOSSES_BY_KIND,
    registered_loss,
    validate_train_config,
)
from tests.retrieval.training.test_config import _load as one_line_error

DOUBLE = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DOUBLE).requires_grad_(True)


def margin_mse_by_loops(s_student: torch.Tensor, s_teacher: torch.Tensor) -> torch.Tensor:
    """1/(Q (n-1)) sum_q sum_{j>=1} ((s[q,0] - s[q,j]) - (t[q,0] - t[q,j]))^2, one term at a
    time."""
    queries, n = s_student.shape
    total = torch.zeros((), dtype=s_student.dtype)
    for q in range(queries):
        for j in range(1, n):
            student = s_student[q, 0] - s_student[q, j]
            teacher = s_teacher[q, 0] - s_teacher[q, j]
            total = total + (student - teacher) ** 2
    return total / (queries * (n - 1))


def listwise_ce_by_hand(logits: torch.Tensor) -> torch.Tensor:
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def test_a_small_case_worked_by_hand():
    # student margins: q0 (3-1, 3-0.5) = (2, 2.5), q1 (2-2.5, 2+1) = (-0.5, 3)
    # teacher margins: q0 (5-2, 5-4) = (3, 1),    q1 (1-0, 1-3) = (1, -2)
    # gaps squared: 1, 2.25, 2.25, 25 -> mean 30.5 / 4
    student = torch.tensor([[3.0, 1.0, 0.5], [2.0, 2.5, -1.0]])
    teacher = torch.tensor([[5.0, 2.0, 4.0], [1.0, 0.0, 3.0]])
    assert MarginMSELoss()(student, teacher).item() == pytest.approx(30.5 / 4)


@pytest.mark.parametrize("shape", [(1, 2), (3, 4), (5, 8)])
def test_equals_the_loops(shape):
    student, teacher = _randn(*shape, seed=1), _randn(*shape, seed=2)
    loss = MarginMSELoss()(student, teacher)
    assert torch.allclose(loss, margin_mse_by_loops(student, teacher), atol=1e-12)


def test_bf16_inputs_computed_in_float32_give_the_float64_loss():
    """Scores of ~100 (unnormalised dot products) rounded to bf16: the loss of those very bf16
    numbers, cast up as the training modules do (loss_precision.as_fp32), is their float64 loss
    to float32 precision, where the same formula in bf16 is far off."""
    from retrieval.training.loss_precision import as_fp32

    student = (100 + 10 * _randn(4, 6, seed=3)).to(torch.bfloat16)
    teacher = (5 * _randn(4, 6, seed=4)).to(torch.bfloat16)
    exact = margin_mse_by_loops(student.double(), teacher.double())
    loss = MarginMSELoss()(*as_fp32(student, teacher))
    assert loss.dtype == torch.float32
    assert abs(loss.item() - exact.item()) <= 1e-6 * exact.item()
    in_bf16 = MarginMSELoss()(student, teacher)
    assert abs(in_bf16.item() - exact.item()) > 1e-3 * exact.item()


def test_the_teacher_gets_no_gradient_and_the_student_moves_towards_its_margins():
    student, teacher = _randn(3, 5, seed=5), _randn(3, 5, seed=6)
    loss = MarginMSELoss()(student, teacher)
    grad_student, grad_teacher = torch.autograd.grad(loss, (student, teacher), allow_unused=True)
    assert grad_teacher is None
    gap = ((student[:, :1] - student[:, 1:]) - (teacher[:, :1] - teacher[:, 1:])).detach()
    # a margin too wide (gap > 0) raises its negative's score and lowers the positive's
    assert torch.equal(torch.sign(-grad_student[:, 1:]), torch.sign(gap))
    assert torch.equal(torch.sign(-grad_student[:, 0]), torch.sign(-gap.sum(1)))
    stepped = (student - 0.05 * grad_student).detach()
    gap_after = (stepped[:, :1] - stepped[:, 1:]) - (teacher[:, :1] - teacher[:, 1:])
    assert ((gap_after**2).sum(1) < (gap**2).sum(1)).all()  # each query's margins closer
    assert MarginMSELoss()(stepped, teacher) < loss


def test_the_joint_form_adds_the_rerankers_ce_and_only_that_trains_the_reranker():
    s_de, s_ce = _randn(3, 4, seed=7), _randn(3, 4, seed=8)
    loss_fn = JointMarginMSELoss()
    loss = loss_fn(s_de, s_ce)
    distill, ce = margin_mse_by_loops(s_de, s_ce.detach()), listwise_ce_by_hand(s_ce)
    assert torch.allclose(loss, distill + ce, atol=1e-12)
    assert torch.allclose(loss_fn.last_margin_mse, distill.detach())
    assert torch.allclose(loss_fn.last_ce, ce.detach())
    got_de, got_ce = torch.autograd.grad(loss, (s_de, s_ce))
    assert torch.allclose(got_de, torch.autograd.grad(distill, s_de)[0], atol=1e-12)
    assert torch.allclose(got_ce, torch.autograd.grad(ce, s_ce)[0], atol=1e-12)


@pytest.mark.parametrize(
    "student, teacher, says",
    [
        (torch.zeros(3, 1), torch.zeros(3, 1), "at least one negative"),
        (torch.zeros(3, 4), torch.zeros(3, 5), "must have the same shape"),
        (torch.zeros(4), torch.zeros(4), "2-D"),
    ],
)
def test_bad_shapes_are_one_line(student, teacher, says):
    with pytest.raises(ValueError, match=says) as err:
        MarginMSELoss()(student, teacher)
    assert "\n" not in str(err.value)


# ---- registry and config ---------------------------------------------------------------------

RAW = {"model": "m", "output_dir": "out", "data": {"tables": "t"}, "loss": "margin_mse"}


def test_registered_and_taken_by_kinds_dual_and_joint_only():
    assert LOSSES["margin_mse"] is MarginMSELoss
    assert [k for k, losses in LOSSES_BY_KIND.items() if "margin_mse" in losses] == [
        "dual",
        "joint",
    ]
    assert validate_train_config({**RAW, "kind": "dual", "hard_negatives": 2}).loss == (
        "margin_mse"
    )
    joint = validate_train_config({**RAW, "kind": "joint", "cross_model": "c"})
    assert isinstance(build_loss(registered_loss(joint.loss, joint.kind)), JointMarginMSELoss)
    assert isinstance(build_loss(registered_loss("margin_mse", "dual")), MarginMSELoss)


@pytest.mark.parametrize(
    "raw, says",
    [
        ({"kind": "cross"}, "loss 'margin_mse' does not train a cross model"),
        ({"kind": "pair", "data": {"pairs": "p"}}, "does not train a pair model"),
        ({"kind": "retromae"}, "does not train a retromae model"),
        ({"kind": "dual"}, "key 'hard_negatives': loss 'margin_mse' needs at least 1"),
        ({"kind": "dual", "hard_negatives": 1, "queue": {}}, "key 'queue'"),
        ({"kind": "dual", "hard_negatives": 1, "random_negatives": True}, "random_negatives"),
        ({"kind": "dual", "hard_negatives": 1, "loss_args": {"temperature": 1}}, "loss_args"),
        ({"kind": "dual", "hard_negatives": 1, "mask_false_negatives": True}, "no in-batch"),
    ],
)
def test_elsewhere_margin_mse_is_one_line(tmp_path, raw, says):
    if raw["kind"] == "pair":
        (tmp_path / "p").mkdir()
        raw = {**raw, "data": {"pairs": str(tmp_path / "p")}}
    assert says in one_line_error(tmp_path, {"loss": "margin_mse", **raw})
