"""Checkpoints that let a killed run resume at the same step: the DeepSpeed engine state
(weights, optimizer, scheduler) plus each rank's torch RNG state, which DeepSpeed does not keep.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)
TAG = re.compile(r"^step-(\d+)$")


def _rng_file(ckpt_dir: Path, tag: str, rank: int) -> Path:
    return ckpt_dir / tag / f"rng-rank{rank}.pt"


def save(engine, ckpt_dir: Path, step: int, rank: int, keep: int) -> None:
    """Save step ``step``. DeepSpeed moves its ``latest`` pointer only after writing all files,
    and our RNG file is written before that, so ``latest`` always names a complete checkpoint."""
    tag = f"step-{step}"
    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    torch.save({"torch": torch.get_rng_state()}, _rng_file(ckpt_dir, tag, rank))
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        prune(ckpt_dir, keep)


def prune(ckpt_dir: Path, keep: int) -> None:
    tags = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := TAG.match(p.name)))
    for _, path in tags[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def resume(engine, ckpt_dir: Path, rank: int) -> int:
    """Load the latest checkpoint if there is one; return the step to continue from."""
    if not (ckpt_dir / "latest").is_file():
        return 0
    path, client_state = engine.load_checkpoint(str(ckpt_dir))
    if path is None:
        return 0
    step = int(client_state["step"])
    rng_file = _rng_file(ckpt_dir, f"step-{step}", rank)
    if rng_file.is_file():
        torch.set_rng_state(torch.load(rng_file)["torch"])
    logger.info("resumed from %s at step %d", path, step)
    return step
