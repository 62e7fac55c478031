"""The end every training stage shares: run the training launcher (it resumes from the work
folder's checkpoints), then hand the exported models, the summary and the curves over to the
stage's output folder. Kept apart so a stage that trains imports no other stage's code."""

from __future__ import annotations

import json
import shutil

from pipelines.launch_settings import LaunchSettings
from pipelines.stages.context import StageContext
from pipelines.train_launcher import launch
from retrieval.training.config import TrainConfig

METRICS = ("steps", "final_loss", "examples_per_s", "train_seconds", "world_size", "batch_size",
           "placement")  # fmt: skip


def launch_and_collect(ctx: StageContext, config: TrainConfig, how: LaunchSettings) -> dict:
    """Train into ``ctx.work``, copy what the run exported into ``ctx.out``; returns the
    stage's metrics from the training summary."""
    launch(config, how)
    ctx.out.mkdir(parents=True)
    for name in ("model", "cross_model", "tensorboard"):
        if (ctx.work / name).is_dir():
            shutil.copytree(ctx.work / name, ctx.out / name)
    summary = json.loads((ctx.work / "train_summary.json").read_text())
    shutil.copy(ctx.work / "train_summary.json", ctx.out / "train_summary.json")
    if (ctx.work / "train_log.jsonl").is_file():
        shutil.copy(ctx.work / "train_log.jsonl", ctx.out / "train_log.jsonl")
    return {k: summary[k] for k in METRICS if k in summary}
