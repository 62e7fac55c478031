"""What a stage is handed: its config, its inputs resolved to paths (or a hub id for a model
named by id), a temporary folder to write its outputs into, and a work folder that survives
a crash (checkpoints). A stage opens nothing else, so a test can call it without the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import PipelineConfig


@dataclass
class StageContext:
    name: str
    config: PipelineConfig
    out: Path  # becomes run_dir/name when the stage succeeds
    work: Path  # run_dir/.work/name-FINGERPRINT: kept across crashes, removed after success
    inputs: dict[str, Path | str] = field(default_factory=dict)  # as the stage's spec names them

    def path(self, name: str) -> Path:
        """An input that must be a local path (a table, a folder, a model folder)."""
        return Path(self.inputs[name])

    @property
    def tables(self) -> Path:
        """The prepared tables (corpus, queries, qrels...): the ``tables`` input."""
        return self.path("tables")

    def parts(self, name: str) -> Path:
        """Where an inference step writes the parts of table ``name`` (pipelines/inference/
        steps.py): in the work folder, so a rerun after a crash reuses the finished ones."""
        return self.work / "parts" / name

    @property
    def section(self):
        return getattr(self.config.stages, self.name)
