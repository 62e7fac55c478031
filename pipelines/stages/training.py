"""Stages train_dual_0/1/2, train_cross and train_joint: build the examples each one trains on,
then run the shared training launcher with checkpoints in the stage's work folder."""

from __future__ import annotations

import logging
from itertools import chain
from pathlib import Path

import pyarrow as pa

from pipelines.config import STAGE_KINDS, PipelineConfig
from pipelines.driver_traffic import received
from pipelines.launch_settings import LaunchSettings, split_launch_keys
from pipelines.stages import base_dual_model, last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.deep_negatives import deep_examples
from pipelines.stages.negatives import examples_from_candidates
from pipelines.stages.retriever_scores import scored_examples
from pipelines.stages.spec import External, Output, StageSpec
from pipelines.stages.trained_model import launch_and_collect
from retrieval.models.dual_encoder import DualEncoderSettings
from retrieval.tables.schemas import CANDIDATES, EXAMPLES, SCORED_EXAMPLES
from retrieval.tables.store import iter_shards, read_manifest, table_exists, write_table
from retrieval.training.config import TrainConfig, absolute_paths, validate_train_config

logger = logging.getLogger(__name__)

EXAMPLES_FROM = {  # the examples table each stage trains on, by producing stage and name
    "train_cross": ("mine", "examples-{split}"),
    "train_dual_1": ("denoise", "examples-{split}"),
    "train_dual_2": ("denoise", "examples-{split}"),
    "train_joint": ("denoise", "examples-joint-{split}"),
}


def examples_source(config: PipelineConfig, name: str) -> tuple[str, str]:
    """The (stage, table) a stage trains on: a dual stage reads mine's undenoised examples
    when denoise is off (e.g. mined with ``stages.mine.positive_aware`` instead); train_joint
    needs denoise's hybrid lists."""
    stage, table = EXAMPLES_FROM[name]
    if stage == "denoise" and name != "train_joint" and not config.enabled("denoise"):
        return "mine", "examples-{split}"
    return stage, table


def as_examples(shard: pa.Table) -> pa.Table:
    """An examples shard in the plain schema, so tables of several stages concatenate (the
    teacher scores of denoise's examples are left out: nothing to pair them with elsewhere)."""
    return shard.select(EXAMPLES.names).cast(EXAMPLES)


def start_model(config: PipelineConfig, name: str) -> Output | External:
    """The model a stage starts from: the previous dual stage's, or the base (cross) model;
    a dual stage's base is the pretrain stage's model when that stage runs."""
    section = getattr(config.stages, name)
    if name == "train_joint" or section.init == "previous":
        return Output(last_dual_before(config, name), "model")
    if name == "train_cross":
        return External(config.cross_model or config.model)
    return base_dual_model(config)


def spec(config: PipelineConfig, name: str) -> StageSpec:
    split = config.data.train_split
    reads: dict = {"tables": Output("prepare"), "model": start_model(config, name)}
    if name in EXAMPLES_FROM:
        stage, table = examples_source(config, name)
        reads["examples"] = Output(stage, table.format(split=split))
    if name == "train_cross":
        reads.update(cross_reads(config, split))
    if name == "train_dual_2" or (name == "train_joint" and config.stages.train_joint.augmented):
        reads["augmented"] = Output("augment", "examples-augmented")
    if name == "train_joint":
        reads["cross_model"] = Output("train_cross", "model")
    writes = ("model", "cross_model") if name == "train_joint" else ("model",)
    return StageSpec(
        reads=reads,
        writes=(*writes, "train_summary.json"),
        may_write=("train_log.jsonl", "tensorboard"),
    )


def cross_reads(config: PipelineConfig, split: str) -> dict:
    """train_cross's extra inputs: mine's lists (deep negatives, the retriever's scores), its
    title queries' examples (and their lists) when mine drew any."""
    titles = config.stages.mine.title_queries
    lists = config.stages.train_cross.deep_negatives or distils_retriever(config)
    reads = {"candidates": Output("mine", f"candidates-{split}")} if lists else {}
    if titles:
        reads["titles"] = Output("mine", "examples-titles")
    if titles and lists:
        reads["title_candidates"] = Output("mine", "candidates-titles")
    return reads


def cross_examples(ctx: StageContext) -> Path:
    """train_cross's examples: mine's, plus its title queries' when it drew any, each with
    deep negatives from its own lists when ``deep_negatives`` is set, and with the retriever's
    score of every passage from those lists when the loss distils them (listwise_ce_kl)."""
    parts = [("examples", "candidates", ctx.config.data.train_split)]
    if "titles" in ctx.inputs:
        parts.append(("titles", "title_candidates", "titles"))  # no answers-titles table
    scored = distils_retriever(ctx.config)
    tables = []
    for examples, candidates, split in parts:
        path = ctx.path(examples)
        if ctx.section.deep_negatives:
            out = ctx.work / f"{examples}-deep"
            path = deep_examples(ctx.tables, split, path, ctx.path(candidates),
                                 ctx.section.deep_negatives, ctx.config.seed, out)  # fmt: skip
        if scored:
            path = scored_examples(path, ctx.path(candidates), ctx.work / f"{examples}-scored")
        tables.append(path)
    if len(tables) == 1:
        return tables[0]
    combined = ctx.work / "examples-combined"
    shards = chain.from_iterable(iter_shards(table) for table in tables)
    if scored:
        write_table(combined, shards, SCORED_EXAMPLES)
    else:
        write_table(combined, (as_examples(shard) for shard in shards), EXAMPLES)
    return combined


def retriever_temperature(config: PipelineConfig) -> float:
    """The temperature of the retriever whose lists mine wrote (train_dual_0)."""
    settings = {**config.model_settings.overrides(),
                **config.stages.train_dual_0.train.model_settings.overrides()}  # fmt: skip
    return settings.get("temperature", DualEncoderSettings().temperature)


def distils_retriever(config: PipelineConfig) -> bool:
    """Whether train_cross distils the retriever's scores of its lists (loss listwise_ce_kl)."""
    return config.stages.train_cross.train.loss == "listwise_ce_kl"


def examples_for(ctx: StageContext) -> Path | None:
    """The examples table a stage trains on (None: positives from qrels only)."""
    if ctx.name == "train_dual_0":
        if ctx.section.bm25_negatives:
            return bm25_examples(ctx, ctx.config.data.train_split)
        return None
    if ctx.name == "train_cross":
        return cross_examples(ctx)
    if "augmented" not in ctx.inputs:
        return ctx.path("examples")
    combined = ctx.work / "examples-combined"
    shards = chain(iter_shards(ctx.path("examples")), iter_shards(ctx.path("augmented")))
    write_table(combined, (as_examples(shard) for shard in shards), EXAMPLES)
    labelled, augmented = (read_manifest(ctx.path(n))["rows"] for n in ("examples", "augmented"))
    logger.info("%s trains on %d examples: %d labelled, then %d of augment's pseudo-labelled",
                ctx.name, labelled + augmented, labelled, augmented)  # fmt: skip
    return combined


def bm25_examples(ctx: StageContext, split: str) -> Path:
    """DPR-style hard negatives: BM25's top passages that are not judged relevant and, when
    the split has answers (NQ), hold none of them in their body (pipelines/stages/negatives.py);
    BM25 is then asked for twice as many, so the list can still fill up."""
    answers = ctx.tables / f"answers-{split}"
    wanted = ctx.section.bm25_negatives
    candidates = ctx.work / "bm25-candidates"
    k = 2 * wanted if table_exists(answers) else wanted
    bm25_off_driver(ctx.tables, split, k, candidates)
    path = ctx.work / "examples-bm25"
    write_table(path, examples_from_candidates(ctx.tables, split, candidates, wanted), EXAMPLES)
    return path


def bm25_off_driver(tables: Path, split: str, k: int, out: Path) -> None:
    """BM25's candidates table, computed in a Ray task when Ray runs (the index of an MS MARCO
    or NQ corpus is several GB, and the driver holds no corpus), else in this process."""
    try:
        import ray

        remote = ray.is_initialized()
    except ImportError:
        remote = False
    if remote:
        received(
            ray.get(ray.remote(num_cpus=1)(write_bm25_candidates).remote(tables, split, k, out))
        )
    else:
        write_bm25_candidates(tables, split, k, out)


def write_bm25_candidates(tables: Path, split: str, k: int, out: Path) -> None:
    from retrieval.bm25 import bm25_candidates

    qrels = tables / f"qrels-{split}"
    exclude = qrels if table_exists(qrels) else None
    found = bm25_candidates(tables / "corpus", tables / f"queries-{split}", k, exclude)
    write_table(out, found, CANDIDATES)


def train_config(ctx: StageContext, examples: Path | None) -> tuple[TrainConfig, LaunchSettings]:
    """The stage's ``train`` section as the library's config of its kind, plus how to launch
    it."""
    train_keys, launch_keys = split_launch_keys(ctx.section.train.model_dump(exclude_unset=True))
    kind = STAGE_KINDS[ctx.name]
    raw = {
        "kind": kind,
        "model": str(ctx.inputs["model"]),
        "output_dir": str(ctx.work),
        "data": {"tables": str(ctx.tables), "split": ctx.config.data.train_split},
        "seed": ctx.config.seed,
        **train_keys,
    }
    if examples is not None:
        raw["data"]["examples"] = str(examples)
    if kind == "dual":
        raw["model_settings"] = {
            **ctx.config.model_settings.overrides(),
            **ctx.section.train.model_settings.overrides(),
        }
    if kind == "joint":
        raw["cross_model"] = str(ctx.path("cross_model"))
    if ctx.name == "train_cross" and distils_retriever(ctx.config):
        # the retriever's scores softened as it trained on them, unless the config says
        raw["loss_args"] = {"temperature": retriever_temperature(ctx.config),
                            **raw.get("loss_args", {})}  # fmt: skip
    how = LaunchSettings(**launch_keys, **ctx.config.ray.launch_keys())
    return absolute_paths(validate_train_config(raw)), how


def run(ctx: StageContext) -> dict:
    ctx.work.mkdir(parents=True, exist_ok=True)
    config, how = train_config(ctx, examples_for(ctx))
    return launch_and_collect(ctx, config, how)
