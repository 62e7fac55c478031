"""Stage pretrain: domain pre-training of the base model on the run's own corpus, before
train_dual_0 (off in the presets). ``method: retromae`` trains a masked auto-encoder
(``kind: retromae``), ``method: simcse`` unsupervised SimCSE over the passages (``kind: pair``);
both through the shared training launcher, both exporting a plain encoder folder."""

from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.launch_settings import LaunchSettings, split_launch_keys
from pipelines.stages.context import StageContext
from pipelines.stages.spec import External, Output, StageSpec
from pipelines.stages.trained_model import launch_and_collect
from retrieval.training.config import TrainConfig, absolute_paths, validate_train_config


def spec(config: PipelineConfig, name: str) -> StageSpec:
    return StageSpec(
        reads={"tables": Output("prepare"), "model": External(config.model)},
        writes=("model", "train_summary.json"),
        may_write=("train_log.jsonl", "tensorboard"),
    )


def train_config(ctx: StageContext) -> tuple[TrainConfig, LaunchSettings]:
    """The section as the library's training config: the method's kind, loss and mask ratios, the
    corpus table as the data (SimCSE: its passages are the sentences), the run's model
    settings under the section's own, and the ``train`` keys."""
    section = ctx.section
    train_keys, launch_keys = split_launch_keys(section.train.model_dump(exclude_unset=True))
    raw = {
        **section.method_keys(),
        "model": str(ctx.inputs["model"]),
        "output_dir": str(ctx.work),
        "data": {"tables": str(ctx.tables)},
        "seed": ctx.config.seed,
        **train_keys,
        "model_settings": {
            **ctx.config.model_settings.overrides(),
            **section.train.model_settings.overrides(),
        },
    }
    how = LaunchSettings(**launch_keys, **ctx.config.ray.launch_keys())
    return absolute_paths(validate_train_config(raw)), how


def run(ctx: StageContext) -> dict:
    ctx.work.mkdir(parents=True, exist_ok=True)
    config, how = train_config(ctx)
    return launch_and_collect(ctx, config, how)
