"""Masking known positives among InfoNCE's negatives, against the loss written out by hand."""

import math

import pytest
import torch

from retrieval.losses import CrossBatchInfoNCELoss, InfoNCELoss
from retrieval.losses.false_negatives import known_positive_mask

# Three queries, one hard negative each: passages (positive, negative) per query, by corpus row.
PASSAGE_ROWS = [10, 11, 20, 12, 30, 10]
# Query 0 has two positives (10 sampled, 12 also judged): row 12 is query 1's hard negative and
# row 10 is also query 2's hard negative. Query 2's second positive 20 is query 1's positive.
KNOWN = [[10, 12], [20, -1], [30, 20]]
TARGETS = [0, 2, 4]
MASKED = [{3, 5}, set(), {2}]  # the columns each query must leave out, read off the rows above


def tensors(similarity_seed: int = 0):
    generator = torch.Generator().manual_seed(similarity_seed)
    queries = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    passages = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    extra = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    return queries, passages, extra


def by_hand(queries, passages, extra, tau, masked, cosine=False) -> float:
    """1/B sum_i [ -s_i,t(i) + log sum_{j not in masked[i]} exp(s_ij) ], s = sim / tau, over
    the passages then the extra rows (never masked), in plain Python floats."""
    q, c = queries.tolist(), passages.tolist() + extra.tolist()

    def sim(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        if cosine:
            dot /= math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return dot / tau

    total = 0.0
    for i, target in enumerate(TARGETS):
        kept = [sim(q[i], c[j]) for j in range(len(c)) if j not in masked[i]]
        total += -sim(q[i], c[target]) + math.log(sum(math.exp(s) for s in kept))
    return total / len(TARGETS)


def ids():
    return {
        "passage_rows": torch.tensor(PASSAGE_ROWS),
        "known_positives": torch.tensor(KNOWN),
    }


def test_the_mask_names_exactly_the_known_positives_other_than_the_target():
    mask = known_positive_mask(
        torch.tensor(KNOWN), torch.tensor(PASSAGE_ROWS), torch.tensor(TARGETS)
    )
    assert [set(torch.nonzero(row).flatten().tolist()) for row in mask] == MASKED


@pytest.mark.parametrize(("similarity", "tau"), [("dot", 1.0), ("cosine", 0.1)])
def test_masked_infonce_is_the_formula_and_differs_from_unmasked(similarity, tau):
    queries, passages, extra = tensors()
    loss = InfoNCELoss(tau, similarity)
    cosine = similarity == "cosine"
    masked = loss(queries, passages, extra, **ids())
    want = by_hand(queries, passages, extra, tau, MASKED, cosine)
    assert masked.item() == pytest.approx(want, abs=1e-10)
    unmasked = loss(queries, passages, extra)
    assert unmasked.item() == pytest.approx(
        by_hand(queries, passages, extra, tau, [set()] * 3, cosine)
    )
    assert abs(unmasked.item() - want) > 1e-3


def test_a_masked_candidate_gets_gradient_only_from_the_queries_that_keep_it():
    queries, passages, extra = tensors(1)
    passages = passages.float().requires_grad_()
    loss = InfoNCELoss(1.0)(queries.float(), passages, extra.float(), **ids())
    assert torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, passages)
    assert torch.all(torch.isfinite(grad))
    # Column 3 (row 12) is masked for query 0 only: its gradient is that of queries 1 and 2,
    # sum_i softmax_i[3] * q_i / B, with query 2's softmax leaving out its column 2.
    q, c = queries.float(), torch.cat([passages.detach(), extra.float()])
    kept = [torch.ones(8, dtype=torch.bool) for _ in range(3)]
    kept[2][2] = False
    want = sum(
        (torch.softmax((q[i] @ c.T)[kept[i]], 0)[3 if i == 1 else 2] * q[i] / 3) for i in (1, 2)
    )
    assert torch.allclose(grad[3], want, atol=1e-6)


def test_cross_batch_in_one_process_masks_as_infonce():
    queries, passages, extra = tensors(2)
    for gather_queries in (False, True):
        got = CrossBatchInfoNCELoss(0.5, gather_queries=gather_queries)(
            queries, passages, extra, **ids()
        )
        assert got.item() == pytest.approx(by_hand(queries, passages, extra, 0.5, MASKED))


def test_ids_go_together_and_must_fit():
    queries, passages, _ = tensors()
    with pytest.raises(ValueError, match="given together"):
        InfoNCELoss()(queries, passages, passage_rows=torch.tensor(PASSAGE_ROWS))
    with pytest.raises(ValueError, match=r"passage_rows \[5\]"):
        InfoNCELoss()(
            queries, passages, passage_rows=torch.arange(5), known_positives=torch.tensor(KNOWN)
        )
