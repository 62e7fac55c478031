"""Each loss in retrieval.losses against its formula written out with explicit loops."""

from __future__ import annotations

import math

import pytest
import torch

from retrieval.losses import (
    LOSSES,
    CoSENTLoss,
    CrossBatchInfoNCELoss,
    InfoNCELoss,
    JointListwiseLoss,
    ListwiseCELoss,
    ListwiseKLDistillationLoss,
    MoCoQueue,
    PointwiseBCELoss,
    SimCSELoss,
    build_loss,
)

DOUBLE = torch.float64


def _randn(*shape: int, seed: int, grad: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DOUBLE).requires_grad_(grad)


# ---- reference formulas: plain loops over i / j, no library code ---------------------------


def _sim(a: torch.Tensor, b: torch.Tensor, similarity: str) -> torch.Tensor:
    dot = (a * b).sum()
    if similarity == "cosine":
        return dot / (a.norm() * b.norm())
    return dot


def _neg_log_softmax(logits: list[torch.Tensor], target: int) -> torch.Tensor:
    top = max(float(x.detach()) for x in logits)
    log_norm = top + torch.log(sum(torch.exp(x - top) for x in logits))
    return log_norm - logits[target]


def _ref_infonce(q, p, tau, similarity="dot", extra=None) -> torch.Tensor:
    candidates = [p[j] for j in range(p.shape[0])]
    if extra is not None:
        candidates += [extra[m] for m in range(extra.shape[0])]
    queries = q.shape[0]
    group = p.shape[0] // queries
    total = 0.0
    for i in range(queries):
        logits = [_sim(q[i], c, similarity) / tau for c in candidates]
        total = total + _neg_log_softmax(logits, i * group)
    return total / queries


def _ref_cosent(a, b, labels, scale) -> torch.Tensor:
    s = [scale * _sim(a[i], b[i], "cosine") for i in range(a.shape[0])]
    total = 1.0
    for i in range(len(s)):
        for j in range(len(s)):
            if labels[i] > labels[j]:
                total = total + torch.exp(s[j] - s[i])
    return torch.log(torch.as_tensor(total, dtype=DOUBLE))


def _ref_simcse(z1, z2, tau) -> torch.Tensor:
    n = z1.shape[0]
    total = 0.0
    for i in range(n):
        logits = [_sim(z1[i], z2[j], "cosine") / tau for j in range(n)]
        total = total + _neg_log_softmax(logits, i)
    return total / n


def _softmax_row(row: torch.Tensor) -> list[torch.Tensor]:
    exps = [torch.exp(row[k]) for k in range(row.shape[0])]
    norm = sum(exps)
    return [e / norm for e in exps]


def _ref_kl(s_de, s_ce, direction="de||ce") -> list[torch.Tensor]:
    """One KL value per query (list), in the given direction."""
    out = []
    for q in range(s_de.shape[0]):
        de, ce = _softmax_row(s_de[q]), _softmax_row(s_ce[q])
        first, second = (de, ce) if direction == "de||ce" else (ce, de)
        out.append(sum(first[k] * torch.log(first[k] / second[k]) for k in range(len(de))))
    return out


def _ref_listwise_ce(logits) -> torch.Tensor:
    rows = logits.shape[0]
    total = 0.0
    for q in range(rows):
        total = total - torch.log(_softmax_row(logits[q])[0])
    return total / rows


# ---- InfoNCE (in-batch + hard negatives) ----------------------------------------------------


@pytest.mark.parametrize("hard", [0, 1, 3])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_infonce_matches_formula_with_hard_negatives(hard, similarity):
    batch, dim, tau = 3, 5, 0.7
    q, p = _randn(batch, dim, seed=1), _randn(batch * (1 + hard), dim, seed=2)
    loss_fn = InfoNCELoss(temperature=tau, similarity=similarity)
    loss = loss_fn(q, p)
    grads = torch.autograd.grad(loss, (q, p))
    expected = _ref_infonce(q, p, tau, similarity)
    expected_grads = torch.autograd.grad(expected, (q, p))
    assert torch.allclose(loss, expected, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-10)
    assert loss_fn.last_num_candidates == batch * (1 + hard)


def test_infonce_positive_is_its_own_group_head():
    # Query i equal to passage i*(1+H) (scaled up) and orthogonal to the rest: loss -> 0.
    eye = torch.eye(4, dtype=DOUBLE)
    q = 50 * eye[[0, 2]]
    loss = InfoNCELoss()(q, eye)  # H=1: positives at rows 0 and 2
    assert float(loss) < 1e-10


def test_infonce_gradcheck():
    q, p, extra = _randn(2, 3, seed=3), _randn(4, 3, seed=4), _randn(2, 3, seed=5)
    for similarity in ("dot", "cosine"):
        loss_fn = InfoNCELoss(temperature=0.5, similarity=similarity)
        assert torch.autograd.gradcheck(lambda a, b, c, f=loss_fn: f(a, b, c), (q, p, extra))


def test_infonce_extra_negatives_are_appended_candidates():
    q, p, extra = _randn(2, 4, seed=6), _randn(4, 4, seed=7), _randn(3, 4, seed=8)
    loss_fn = InfoNCELoss(temperature=0.5)
    loss = loss_fn(q, p, extra_negatives=extra)
    assert torch.allclose(loss, _ref_infonce(q, p, 0.5, extra=extra), atol=1e-10)
    assert loss_fn.last_num_candidates == 4 + 3


# ---- MoCo queue ------------------------------------------------------------------------------


def _rows(start: int, stop: int) -> torch.Tensor:
    return torch.arange(start, stop, dtype=torch.float32)[:, None].repeat(1, 2)


def test_moco_queue_is_fifo_and_wraps():
    queue = MoCoQueue(size=5, dim=2)
    assert queue.negatives().shape == (0, 2) and len(queue) == 0
    queue.push(_rows(0, 3))
    assert torch.equal(queue.negatives(), _rows(0, 3))
    queue.push(_rows(3, 7))  # 7 rows pushed into 5 slots: 0 and 1 fall out
    assert torch.equal(queue.negatives(), _rows(2, 7))
    queue.push(_rows(7, 8))
    assert torch.equal(queue.negatives(), _rows(3, 8))
    queue.push(_rows(8, 20))  # more than size at once: only the newest 5 stay
    assert torch.equal(queue.negatives(), _rows(15, 20)) and len(queue) == 5
    assert set(queue.state_dict()) == {"queue", "pointer", "count"}


def test_moco_queue_detaches_and_checks_dim():
    queue = MoCoQueue(size=4, dim=3)
    source = torch.randn(2, 3, requires_grad=True)
    queue.push(source * 2)
    assert not queue.negatives().requires_grad
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        queue.push(torch.randn(2, 4))
    with pytest.raises(ValueError):
        MoCoQueue(size=0, dim=3)


def test_infonce_with_queue_equals_formula_with_queued_vectors():
    queue = MoCoQueue(size=4, dim=3, dtype=DOUBLE)
    q, p = _randn(2, 3, seed=13), _randn(4, 3, seed=14)
    empty = InfoNCELoss(temperature=0.2)(q, p, extra_negatives=queue.negatives())
    assert torch.allclose(empty, _ref_infonce(q, p, 0.2), atol=1e-10)  # first step: no queue
    old = [_randn(2, 3, seed=s, grad=False) for s in (10, 11, 12)]
    for batch in old:
        queue.push(batch)
    queued = torch.cat(old)[-4:]  # FIFO: the 4 newest rows, oldest first
    loss = InfoNCELoss(temperature=0.2)(q, p, extra_negatives=queue.negatives())
    assert torch.allclose(loss, _ref_infonce(q, p, 0.2, extra=queued), atol=1e-10)
    queue.push(p)  # the usual order: score, enqueue, then backward
    loss.backward()
    assert q.grad is not None and p.grad is not None


# ---- CoSENT, SimCSE --------------------------------------------------------------------------


def test_cosent_matches_formula():
    a, b = _randn(6, 4, seed=20), _randn(6, 4, seed=21)
    labels = torch.tensor([0.0, 1.0, 2.0, 1.0, 5.0, 0.0])  # ties contribute no pair
    loss = CoSENTLoss(scale=20.0)(a, b, labels)
    expected = _ref_cosent(a, b, labels, 20.0)
    assert torch.allclose(loss, expected, atol=1e-10)
    got = torch.autograd.grad(loss, (a, b))
    want = torch.autograd.grad(expected, (a, b))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-10)


def test_cosent_without_ordered_pairs_is_zero():
    a, b = _randn(3, 4, seed=22), _randn(3, 4, seed=23)
    loss = CoSENTLoss()(a, b, torch.ones(3))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(a.grad == 0)


def test_simcse_matches_formula():
    z1, z2 = _randn(5, 4, seed=30), _randn(5, 4, seed=31)
    loss = SimCSELoss(temperature=0.05)(z1, z2)
    assert torch.allclose(loss, _ref_simcse(z1, z2, 0.05), atol=1e-9)


# ---- re-ranker losses and distillation -------------------------------------------------------


def test_listwise_ce_matches_formula():
    logits = _randn(3, 4, seed=40)
    assert torch.allclose(ListwiseCELoss()(logits), _ref_listwise_ce(logits), atol=1e-10)


def test_pointwise_bce_matches_formula():
    logits, labels = _randn(5, seed=41), torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0], dtype=DOUBLE)
    total = 0.0
    for z, y in zip(logits, labels):
        prob = 1 / (1 + torch.exp(-z))
        total = total - (y * torch.log(prob) + (1 - y) * torch.log(1 - prob))
    expected = total / 5
    assert torch.allclose(PointwiseBCELoss()(logits, labels), expected, atol=1e-10)


@pytest.mark.parametrize("direction", ["de||ce", "ce||de"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_listwise_kl_matches_formula(direction, reduction):
    s_de, s_ce = _randn(3, 4, seed=50), _randn(3, 4, seed=51)
    loss = ListwiseKLDistillationLoss(direction=direction, reduction=reduction)(s_de, s_ce)
    per_query = _ref_kl(s_de, s_ce, direction)
    expected = sum(per_query) / (3 if reduction == "mean" else 1)
    assert torch.allclose(loss, expected, atol=1e-10)


def test_listwise_kl_default_is_the_papers_direction():
    # RocketQAv2's L_KL = sum_q sum_p s~_de log(s~_de / s~_ce): retriever distribution first.
    s_de, s_ce = _randn(2, 5, seed=52), _randn(2, 5, seed=53)
    default = ListwiseKLDistillationLoss(reduction="sum")(s_de, s_ce)
    assert torch.allclose(default, sum(_ref_kl(s_de, s_ce, "de||ce")), atol=1e-10)
    assert not torch.allclose(default, sum(_ref_kl(s_de, s_ce, "ce||de")))
    shifted = ListwiseKLDistillationLoss()(s_de, s_de + 3.0)  # softmax ignores a shift
    assert float(shifted.detach()) == pytest.approx(0, abs=1e-12)


def test_listwise_kl_gradcheck():
    s_de, s_ce = _randn(2, 3, seed=54), _randn(2, 3, seed=55)
    for direction in ("de||ce", "ce||de"):
        loss_fn = ListwiseKLDistillationLoss(direction=direction)
        assert torch.autograd.gradcheck(lambda a, b, f=loss_fn: f(a, b), (s_de, s_ce))


def test_detach_teacher_stops_gradient_into_reranker():
    s_de, s_ce = _randn(2, 4, seed=56), _randn(2, 4, seed=57)
    joint_grads = torch.autograd.grad(ListwiseKLDistillationLoss()(s_de, s_ce), (s_de, s_ce))
    assert all(g.abs().sum() > 0 for g in joint_grads)
    static = ListwiseKLDistillationLoss(detach_teacher=True)(s_de, s_ce)
    assert torch.autograd.grad(static, s_ce, allow_unused=True)[0] is None


def test_joint_listwise_is_kl_plus_reranker_ce():
    s_de, s_ce = _randn(3, 4, seed=58), _randn(3, 4, seed=59)
    loss_fn = JointListwiseLoss()
    loss = loss_fn(s_de, s_ce)
    kl = sum(_ref_kl(s_de, s_ce, "de||ce")) / 3
    ce = _ref_listwise_ce(s_ce)
    assert torch.allclose(loss, kl + ce, atol=1e-10)
    assert torch.allclose(loss_fn.last_kl, kl.detach()) and not loss_fn.last_kl.requires_grad
    assert torch.allclose(loss_fn.last_ce, ce.detach())
    got = torch.autograd.grad(loss, (s_de, s_ce))
    want = torch.autograd.grad(kl + ce, (s_de, s_ce))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-10)


# ---- validation and registry -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.1, math.nan, math.inf])
@pytest.mark.parametrize("make", [InfoNCELoss, CrossBatchInfoNCELoss, SimCSELoss])
def test_temperature_must_be_positive(make, bad):
    with pytest.raises(ValueError, match="temperature"):
        make(temperature=bad)


def test_other_option_validation():
    with pytest.raises(ValueError, match="scale"):
        CoSENTLoss(scale=0)
    with pytest.raises(ValueError, match="similarity"):
        InfoNCELoss(similarity="l2")
    with pytest.raises(ValueError, match="direction"):
        ListwiseKLDistillationLoss(direction="both")
    with pytest.raises(ValueError, match="reduction"):
        JointListwiseLoss(reduction="none")


def _one_line_error(call, *shapes: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for shape in shapes:
        assert shape in message, message


def test_shape_mismatch_names_the_shapes():
    t = torch.randn
    _one_line_error(lambda: InfoNCELoss()(t(3, 4), t(4, 4)), "[3, 4]", "[4, 4]")
    _one_line_error(lambda: InfoNCELoss()(t(2, 4), t(4, 5)), "[2, 4]", "[4, 5]")
    _one_line_error(lambda: InfoNCELoss()(t(2, 4), t(4, 4), t(3, 5)), "[4, 4]", "[3, 5]")
    _one_line_error(lambda: InfoNCELoss()(t(4), t(4, 4)), "[4]")
    _one_line_error(lambda: CrossBatchInfoNCELoss()(t(3, 4), t(4, 4)), "[3, 4]", "[4, 4]")
    _one_line_error(lambda: SimCSELoss()(t(3, 4), t(2, 4)), "[3, 4]", "[2, 4]")
    _one_line_error(lambda: CoSENTLoss()(t(3, 4), t(3, 4), t(2)), "[2]", "[3, 4]")
    _one_line_error(lambda: CoSENTLoss()(t(3, 4), t(3, 5), t(3)), "[3, 4]", "[3, 5]")
    _one_line_error(lambda: ListwiseCELoss()(t(6)), "[6]")
    _one_line_error(lambda: PointwiseBCELoss()(t(5), t(4)), "[5]", "[4]")
    _one_line_error(lambda: JointListwiseLoss()(t(2, 4), t(2, 3)), "[2, 4]", "[2, 3]")


def test_registry_builds_every_loss_by_name():
    assert {"infonce", "cross_batch", "cosent", "simcse", "listwise_kl"} <= set(LOSSES)
    for name, cls in LOSSES.items():
        assert isinstance(build_loss(name), cls)
    assert build_loss("infonce", temperature=0.05, similarity="cosine").temperature == 0.05
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("triplet")
