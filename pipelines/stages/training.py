"""Stages train_dual_0/1/2, train_cross and train_joint: build the examples each one trains on,
then run the shared training launcher with checkpoints in the stage's work folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa

from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.train_launcher import launch
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import read_table, table_exists, write_table
from retrieval.training.config import TrainConfig, absolute_paths

KIND = {"train_cross": "cross", "train_joint": "joint"}


def start_model(ctx: StageContext) -> str:
    """The dual encoder a stage starts from: the base model, or the previous stage's."""
    if ctx.name == "train_joint" or ctx.section.init == "previous":
        previous = last_dual_before(ctx.config, ctx.name)
        return str(ctx.stage_dir(previous) / "model")
    return ctx.config.model


def examples_for(ctx: StageContext) -> Path | None:
    """The examples table a stage trains on (None: positives from qrels only)."""
    split = ctx.config.data.train_split
    if ctx.name == "train_dual_0":
        if ctx.section.bm25_negatives:
            return bm25_examples(ctx, split)
        return None
    if ctx.name == "train_cross":
        return ctx.stage_dir("mine") / f"examples-{split}"
    if ctx.name == "train_dual_1":
        return ctx.stage_dir("denoise") / f"examples-{split}"
    if ctx.name == "train_joint":
        return ctx.stage_dir("denoise") / f"examples-joint-{split}"
    labeled = read_table(ctx.stage_dir("denoise") / f"examples-{split}")
    augmented = read_table(ctx.stage_dir("augment") / "examples-augmented")
    combined = ctx.work / "examples-combined"
    write_table(combined, pa.concat_tables([labeled, augmented.cast(EXAMPLES)]), EXAMPLES)
    return combined


def bm25_examples(ctx: StageContext, split: str) -> Path:
    """DPR-style hard negatives: BM25's top passages that are not judged relevant."""
    from retrieval.bm25 import bm25_candidates
    from retrieval.training.examples import load_examples

    qrels = ctx.tables / f"qrels-{split}"
    candidates = bm25_candidates(
        ctx.tables / "corpus",
        ctx.tables / f"queries-{split}",
        ctx.section.bm25_negatives,
        exclude_qrels_dir=qrels if table_exists(qrels) else None,
    )
    negatives = dict(zip(candidates["qid"].to_pylist(), candidates["pids"].to_pylist()))
    rows = load_examples(ctx.tables, split, None).to_pylist()
    for row in rows:
        positives = set(row["positives"])
        row["negatives"] = [p for p in negatives.get(row["qid"], []) if p not in positives]
    path = ctx.work / "examples-bm25"
    write_table(path, rows, EXAMPLES)
    return path


def train_config(ctx: StageContext, examples: Path | None) -> TrainConfig:
    kind = KIND.get(ctx.name, "dual")
    base_cross = ctx.config.cross_model or ctx.config.model
    raw = {
        "kind": kind,
        "model": base_cross if kind == "cross" and ctx.section.init == "base" else start_model(ctx),
        "output_dir": str(ctx.work),
        "data": {"tables": str(ctx.tables), "split": ctx.config.data.train_split},
        "seed": ctx.config.seed,
        "ray_address": ctx.config.ray.address,
        **ctx.section.train,
    }
    if examples is not None:
        raw["data"]["examples"] = str(examples)
    if kind == "dual":
        raw["model_settings"] = {**ctx.config.model_settings, **raw.get("model_settings", {})}
    if kind == "joint":
        raw["cross_model"] = str(ctx.stage_dir("train_cross") / "model")
    return absolute_paths(TrainConfig.model_validate(raw))


def run(ctx: StageContext) -> dict:
    ctx.work.mkdir(parents=True, exist_ok=True)
    config = train_config(ctx, examples_for(ctx))
    launch(config)
    ctx.out.mkdir(parents=True)
    for name in ("model", "cross_model"):
        if (ctx.work / name).is_dir():
            shutil.copytree(ctx.work / name, ctx.out / name)
    summary = json.loads((ctx.work / "train_summary.json").read_text())
    shutil.copy(ctx.work / "train_summary.json", ctx.out / "train_summary.json")
    if (ctx.work / "train_log.jsonl").is_file():
        shutil.copy(ctx.work / "train_log.jsonl", ctx.out / "train_log.jsonl")
    return {k: summary[k] for k in ("steps", "final_loss", "examples_per_s", "train_seconds")}
