"""The MoCo queue under data parallelism: every rank pushes every rank's passages, so after a
step all ranks hold the same queue (2 gloo processes)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from retrieval.losses import InfoNCELoss, MoCoQueue
from retrieval.training.modules import DualTrainingModule
from tests.helpers_dist import run_on_ranks

WORLD, BATCH, DIM = 2, 3, 4


class FixedEncoder(nn.Module):
    """Returns this rank's fixed query and passage vectors, whatever the inputs."""

    def __init__(self, rank: int):
        super().__init__()
        generator = torch.Generator().manual_seed(rank)
        self.queries = nn.Parameter(torch.randn(BATCH, DIM, generator=generator))
        self.passages = nn.Parameter(torch.randn(BATCH, DIM, generator=generator))

    def forward(self, query_inputs, passage_inputs):
        return self.queries, self.passages


def _rank(rank: int, out: str) -> None:
    module = DualTrainingModule(FixedEncoder(rank), InfoNCELoss(), MoCoQueue(16, DIM))
    module({}, {}).backward()
    torch.save(module.queue.negatives(), f"{out}/queue-{rank}.pt")


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_every_rank_holds_the_same_queue_of_all_ranks_passages(tmp_path):
    run_on_ranks(_rank, WORLD, str(tmp_path))
    queues = [torch.load(tmp_path / f"queue-{r}.pt") for r in range(WORLD)]
    expected = torch.cat([FixedEncoder(r).passages.detach() for r in range(WORLD)])
    for queue in queues:
        torch.testing.assert_close(queue, expected, rtol=0, atol=0)
