"""What a stage reads and writes, declared beside its ``run``: the runner derives the stage
graph, the existence checks, the fingerprints and the paths it hands the stage from these.

A stage never opens another stage's folder by name; it gets ``ctx.inputs[NAME]`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Output:
    """An output ``name`` of an earlier ``stage`` ("" = that stage's whole folder)."""

    stage: str
    name: str = ""


@dataclass(frozen=True)
class External:
    """Something outside the run directory: a data folder, a model folder or hub id, a file.
    Its content counts in the fingerprint (names, sizes and modification times of its files)."""

    location: str | Path


@dataclass(frozen=True)
class StageSpec:
    """``reads``: local name -> where it comes from; ``writes``: the outputs it always
    produces; ``may_write``: outputs it produces only for some data (answers, examples)."""

    reads: dict[str, Output | External]
    writes: tuple[str, ...]
    may_write: tuple[str, ...] = field(default=())

    def upstream(self) -> list[str]:
        """The earlier stages this one reads, in declaration order."""
        stages = [ref.stage for ref in self.reads.values() if isinstance(ref, Output)]
        return list(dict.fromkeys(stages))
