"""One module per pipeline stage: ``spec(config, name)`` declares what it reads and writes,
``run(ctx)`` does the work and returns its metrics.

Stages are plain functions of (config, resolved input paths) -> output folder; the runner
adds Ray, caching and atomic hand-over. This file maps stage names to modules, nothing more.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.stages.spec import External, Output, StageSpec
from retrieval.errors import ConfigError

DUAL_STAGES = ("train_dual_0", "train_dual_1", "train_dual_2", "train_joint")
MODULES = {
    "prepare": "pipelines.stages.prepare",
    "pretrain": "pipelines.stages.pretrain",
    "train_dual_0": "pipelines.stages.training",
    "mine": "pipelines.stages.mine",
    "train_cross": "pipelines.stages.training",
    "denoise": "pipelines.stages.denoise",
    "train_dual_1": "pipelines.stages.training",
    "augment": "pipelines.stages.augment",
    "train_dual_2": "pipelines.stages.training",
    "train_joint": "pipelines.stages.training",
    "evaluate": "pipelines.stages.evaluate",
}
assert tuple(MODULES) == STAGE_ORDER


def stage_module(stage: str) -> ModuleType:
    """The module that runs ``stage``; an unknown name is an error, never a default."""
    if stage not in MODULES:
        raise ConfigError(f"no stage named '{stage}' (stages: {', '.join(STAGE_ORDER)})")
    return importlib.import_module(MODULES[stage])


def stage_spec(config: PipelineConfig, stage: str) -> StageSpec:
    return stage_module(stage).spec(config, stage)


def last_dual_before(config: PipelineConfig, stage: str) -> str:
    """The most recent enabled stage before ``stage`` that produced a dual encoder."""
    order = config.enabled_stages()
    earlier = order[: order.index(stage)] if stage in order else order
    duals = [s for s in earlier if s in DUAL_STAGES]
    if not duals:
        raise ConfigError(f"stage {stage} needs an enabled dual-encoder training stage before it")
    return duals[-1]


def base_dual_model(config: PipelineConfig) -> Output | External:
    """The model a dual-encoder stage starts from when it starts from the base (init: base):
    the pretrain stage's encoder when that stage is enabled, so domain pre-training replaces
    the base model everywhere the dual encoder restarts; else the configured base model."""
    if config.enabled("pretrain"):
        return Output("pretrain", "model")
    return External(config.model)
