"""Training curves, written by rank 0 every ``log_every`` steps: one JSON line per record in
``train_log.jsonl`` (read by the run report) and the same scalars as TensorBoard event files in
``tensorboard/`` (``tensorboard --logdir OUTPUT/tensorboard``), the ecosystem's format."""

from __future__ import annotations

import json
from pathlib import Path


class TrainLog:
    def __init__(self, out: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = out / "train_log.jsonl"
        self.board = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.board.add_scalar(f"train/{key}", value, record["step"])
        self.board.flush()

    def close(self) -> None:
        self.board.close()
