"""What a training run reports as it goes: one JSON line per record in ``train_log.jsonl`` (read
by the run report) and the same scalars as TensorBoard event files in ``tensorboard/``
(``tensorboard --logdir OUTPUT/tensorboard``), the ecosystem's format.

A record's ``loss`` is the mean over the steps since the previous record (HF Trainer's habit):
one batch's loss every ``log_every`` steps cannot tell noise from divergence. Every step's own
loss goes to TensorBoard alone (``train/loss_step``). Keys holding a ``/`` (``loss/kl``,
``eval/ndcg@10``) are TensorBoard tags as they are; the others go under ``train/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist


class IntervalMeans:
    """Sums of named per-step values since the last :meth:`take`, averaged there over the
    steps (and, on several ranks, over the ranks: every rank must call :meth:`take`)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def take(self, device: torch.device | None = None) -> dict[str, float]:
        """The means since the last call, then start over."""
        names = sorted(self.sums)
        totals = torch.tensor([self.sums[n] for n in names] + [self.steps], dtype=torch.float64)
        if dist.is_initialized() and dist.get_world_size() > 1:
            totals = totals.to(device or "cpu")
            dist.all_reduce(totals)
            totals = totals.cpu()
        self.sums, self.steps = {}, 0
        count = float(totals[-1])
        return {name: float(total) / count for name, total in zip(names, totals[:-1])}


class TrainLog:
    def __init__(self, out: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = out / "train_log.jsonl"
        self.board = SummaryWriter(log_dir=str(out / "tensorboard"))

    def step_loss(self, step: int, loss: float) -> None:
        """One step's own loss, to TensorBoard only (flushed with the next record)."""
        self.board.add_scalar("train/loss_step", loss, step)

    def write(self, record: dict) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                tag = key if "/" in key else f"train/{key}"
                self.board.add_scalar(tag, value, record["step"])
        self.board.flush()

    def close(self) -> None:
        self.board.close()
