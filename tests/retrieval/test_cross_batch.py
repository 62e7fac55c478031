"""Cross-batch InfoNCE over 2 gloo processes equals one-process InfoNCE on the whole batch."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from retrieval import distributed
from retrieval.losses import CrossBatchInfoNCELoss, InfoNCELoss

WORLD, LOCAL_QUERIES, D_IN, D_OUT = 2, 3, 6, 4
# (hard negatives H, gather_queries, similarity, temperature)
CASES = [
    (0, False, "dot", 1.0),
    (1, False, "dot", 0.5),
    (3, False, "cosine", 0.1),
    (1, True, "dot", 0.5),
    (2, True, "cosine", 0.2),
]
CONTROL = 1  # case index rerun with a gather that drops the other ranks' gradients


def _batch(hard: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed full batch: WORLD*B queries and WORLD*B*(1+H) passages (raw features)."""
    generator = torch.Generator().manual_seed(100 + hard)
    total = WORLD * LOCAL_QUERIES
    queries = torch.randn(total, D_IN, generator=generator, dtype=torch.float64)
    passages = torch.randn(total * (1 + hard), D_IN, generator=generator, dtype=torch.float64)
    return queries, passages


def _encoder() -> nn.Linear:
    torch.manual_seed(0)  # identical weights in every process
    return nn.Linear(D_IN, D_OUT).double()


def _gather_without_cross_rank_grad(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """The tempting wrong gather: other ranks' rows as constants, local rows with history."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts)


def _case_on_rank(rank: int, case: tuple) -> dict:
    hard, gather_queries, similarity, temperature = case
    queries, passages = _batch(hard)
    group = 1 + hard
    rows_q = slice(rank * LOCAL_QUERIES, (rank + 1) * LOCAL_QUERIES)
    rows_p = slice(rank * LOCAL_QUERIES * group, (rank + 1) * LOCAL_QUERIES * group)
    encoder = _encoder()
    loss_fn = CrossBatchInfoNCELoss(temperature, similarity, gather_queries=gather_queries)
    loss = loss_fn(encoder(queries[rows_q]), encoder(passages[rows_p]))
    loss.backward()
    grads = [param.grad.clone() for param in encoder.parameters()]
    for grad in grads:  # what DDP / DeepSpeed do: average parameter gradients over ranks
        dist.all_reduce(grad)
        grad /= WORLD
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    return {
        "local_loss": loss.detach(),
        "loss": mean_loss / WORLD,
        "grads": grads,
        "num_candidates": loss_fn.last_num_candidates,
    }


def _run_rank(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        results = {
            "rank": distributed.rank(),
            "world": distributed.world_size(),
            "cases": [_case_on_rank(rank, case) for case in CASES],
        }
        distributed.all_gather_with_grad = _gather_without_cross_rank_grad
        results["control"] = _case_on_rank(rank, CASES[CONTROL])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single_process(case: tuple) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    hard, _, similarity, temperature = case
    queries, passages = _batch(hard)
    encoder = _encoder()
    loss_fn = InfoNCELoss(temperature, similarity)
    loss = loss_fn(encoder(queries), encoder(passages))
    grads = torch.autograd.grad(loss, list(encoder.parameters()))
    return loss.detach(), list(grads), loss_fn.last_num_candidates


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("cross-batch")
    mp.spawn(_run_rank, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[str(c) for c in CASES])
def test_two_ranks_match_one_process(two_rank_results, index):
    case = CASES[index]
    hard, gather_queries = case[0], case[1]
    loss, grads, _ = _single_process(case)
    for rank, results in enumerate(two_rank_results):
        assert (results["rank"], results["world"]) == (rank, WORLD)
        got = results["cases"][index]
        assert torch.allclose(got["loss"], loss, atol=1e-5, rtol=0)
        if gather_queries:  # each rank computes the full loss itself
            assert torch.allclose(got["local_loss"], loss, atol=1e-5, rtol=0)
        for mine, want in zip(got["grads"], grads):
            assert torch.allclose(mine, want, atol=1e-5, rtol=0)
        # every local query sees all gathered passages: W*B*(1+H) candidates, one positive
        assert got["num_candidates"] == WORLD * LOCAL_QUERIES * (1 + hard)


def test_dropping_cross_rank_gradients_is_detected(two_rank_results):
    # Sanity check on the test itself: the wrong gather gives the right loss, wrong grads.
    loss, grads, _ = _single_process(CASES[CONTROL])
    control = two_rank_results[0]["control"]
    assert torch.allclose(control["loss"], loss, atol=1e-5, rtol=0)
    assert max(float((g - w).abs().max()) for g, w in zip(control["grads"], grads)) > 1e-3


def test_without_process_group_it_is_plain_infonce():
    assert not distributed.is_initialized()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    x = torch.randn(3, 2)
    assert distributed.all_gather_with_grad(x) is x
    generator = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    p = torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    for gather_queries in (False, True):
        cross = CrossBatchInfoNCELoss(0.3, "cosine", gather_queries=gather_queries)
        got = cross(q, p, extra)
        want = InfoNCELoss(0.3, "cosine")(q, p, extra)
        assert torch.allclose(got, want, atol=1e-12)
        assert cross.last_num_candidates == 6 + 3
        got_grads = torch.autograd.grad(got, (q, p))
        want_grads = torch.autograd.grad(want, (q, p))
        for g, w in zip(got_grads, want_grads):
            assert torch.allclose(g, w, atol=1e-12)
