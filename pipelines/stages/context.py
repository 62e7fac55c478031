"""What a stage is handed: its config, where to write (a temporary folder) and where to keep
work that must survive a crash (checkpoints), and where earlier stages' outputs are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.config import PipelineConfig


@dataclass
class StageContext:
    name: str
    config: PipelineConfig
    run_dir: Path
    out: Path  # becomes run_dir/name when the stage succeeds
    work: Path  # run_dir/.work/name: kept across crashes, removed after success

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    @property
    def tables(self) -> Path:
        return self.run_dir / "prepare"

    @property
    def section(self):
        return getattr(self.config.stages, self.name)
