"""Cross-batch InfoNCE with known false negatives masked, over 2 gloo processes, equals the
one-process masked InfoNCE on the whole batch. Every known positive the mask must catch sits on
the other rank, so a mask that did not gather the passages' corpus rows would not see it."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from retrieval.distributed import free_port
from retrieval.losses import CrossBatchInfoNCELoss, InfoNCELoss

WORLD, LOCAL, D_IN, D_OUT = 2, 2, 6, 4
# Four queries (two a rank), one hard negative each: (positive, negative) rows per query.
# Rank 0: q0 (100, 201), q1 (110, 202); rank 1: q2 (120, 110), q3 (130, 203).
PASSAGE_ROWS = [100, 201, 110, 202, 120, 110, 130, 203]
# q0 also has 130 (q3's positive, rank 1); q2 also has 201 (q0's negative, rank 0); row 110,
# q1's positive, is q2's hard negative on rank 1.
KNOWN = [[100, 130], [110, -1], [120, 201], [130, -1]]
MASKED = [[6], [5], [1], []]  # columns of the full batch, all on the other rank


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    queries = torch.randn(WORLD * LOCAL, D_IN, generator=generator, dtype=torch.float64)
    passages = torch.randn(WORLD * LOCAL * 2, D_IN, generator=generator, dtype=torch.float64)
    return queries, passages


def encoder() -> nn.Linear:
    torch.manual_seed(0)  # identical weights in every process
    return nn.Linear(D_IN, D_OUT).double()


def on_rank(rank: int, gather_queries: bool) -> dict:
    queries, passages = batch()
    q_rows, p_rows = slice(rank * LOCAL, (rank + 1) * LOCAL), slice(rank * 4, (rank + 1) * 4)
    model = encoder()
    loss = CrossBatchInfoNCELoss(0.5, gather_queries=gather_queries)(
        model(queries[q_rows]),
        model(passages[p_rows]),
        passage_rows=torch.tensor(PASSAGE_ROWS[p_rows]),
        known_positives=torch.tensor(KNOWN[q_rows]),
    )
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for grad in grads:  # what DDP / DeepSpeed do: average parameter gradients over ranks
        dist.all_reduce(grad)
        grad /= WORLD
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    return {"loss": mean / WORLD, "grads": grads}


def run_rank(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        results = {g: on_rank(rank, g) for g in (False, True)}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def one_process(masked: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    queries, passages = batch()
    model = encoder()
    ids = {}
    if masked:
        ids = {"passage_rows": torch.tensor(PASSAGE_ROWS), "known_positives": torch.tensor(KNOWN)}
    loss = InfoNCELoss(0.5)(model(queries), model(passages), **ids)
    return loss.detach(), list(torch.autograd.grad(loss, list(model.parameters())))


def by_hand_full_batch() -> float:
    """The one-process masked loss written out: 1/4 sum_i -s_i,2i + log sum_{j kept} e^s_ij."""
    queries, passages = batch()
    model = encoder()
    scores = (model(queries) @ model(passages).T / 0.5).tolist()
    total = 0.0
    for i, row in enumerate(scores):
        kept = [s for j, s in enumerate(row) if j not in MASKED[i]]
        total += -row[2 * i] + math.log(sum(math.exp(s) for s in kept))
    return total / 4


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("cross-batch-masked")
    mp.spawn(run_rank, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


@pytest.mark.parametrize("gather_queries", [False, True])
def test_two_ranks_masked_match_one_process_masked(two_ranks, gather_queries):
    loss, grads = one_process(masked=True)
    assert loss.item() == pytest.approx(by_hand_full_batch(), abs=1e-10)
    _, unmasked_grads = one_process(masked=False)
    # the masking matters: the one-process gradient moves when the mask is dropped
    assert max(float((g - u).abs().max()) for g, u in zip(grads, unmasked_grads)) > 1e-3
    for results in two_ranks:
        got = results[gather_queries]
        assert torch.allclose(got["loss"], loss, atol=1e-10, rtol=0)
        for mine, want in zip(got["grads"], grads):
            assert torch.allclose(mine, want, atol=1e-10, rtol=0)
