"""Running a test function on several gloo ranks (processes on 127.0.0.1), for the tests that
check what data-parallel training keeps the same on every rank."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp

from retrieval.distributed import free_port


def run_on_ranks(fn: Callable[[int, str], None], world: int, out_dir: str) -> None:
    """``fn(rank, out_dir)`` in ``world`` processes of one gloo group (``fn`` at module level)."""
    mp.spawn(_entry, args=(fn, world, free_port(), str(out_dir)), nprocs=world, join=True)


def _entry(rank: int, fn: Callable[[int, str], None], world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    try:
        fn(rank, out)
    finally:
        dist.destroy_process_group()
