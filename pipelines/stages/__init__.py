"""One module per pipeline stage; each is ``run(ctx) -> metrics`` over the run directory.

Stages are plain functions of (config, input folders) -> output folder; the runner adds Ray,
caching and atomic hand-over. ``needs`` says which earlier stages a stage reads.
"""

from __future__ import annotations

from pipelines.config import PipelineConfig

DUAL_STAGES = ("train_dual_0", "train_dual_1", "train_dual_2", "train_joint")


def last_dual_before(config: PipelineConfig, stage: str) -> str | None:
    """The most recent enabled stage before ``stage`` that produced a dual encoder."""
    order = list(config.enabled_stages())
    earlier = order[: order.index(stage)] if stage in order else order
    duals = [s for s in earlier if s in DUAL_STAGES]
    return duals[-1] if duals else None


def needs(config: PipelineConfig, stage: str) -> list[str]:
    """Earlier stages whose outputs ``stage`` reads (all must be enabled)."""
    fixed = {
        "prepare": [],
        "train_dual_0": ["prepare"],
        "mine": ["prepare", last_dual_before(config, "mine")],
        "train_cross": ["prepare", "mine"],
        "denoise": ["prepare", "mine", "train_cross"],
        "train_dual_1": ["prepare", "denoise"],
        "augment": ["prepare", "train_cross", last_dual_before(config, "augment")],
        "train_dual_2": ["prepare", "denoise", "augment"],
        "train_joint": ["prepare", "denoise", "train_cross", last_dual_before(config, stage)],
        "evaluate": ["prepare", *[s for s in config.enabled_stages() if s in DUAL_STAGES]],
    }[stage]
    section = getattr(config.stages, stage)
    if getattr(section, "init", "base") == "previous" and stage != "train_joint":
        fixed.append(last_dual_before(config, stage))
    return list(dict.fromkeys(fixed))
