"""Corpus embeddings in the pipeline: encoded in the driver process or on Ray Data actors
(``encode_actors`` in the stage's section), and computed once per model per run: a stage that
needs the corpus encoded by a model that an earlier stage already encoded it with reads those
embeddings instead (``embeddings_source``), so mine's vectors serve augment and evaluate."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.ray_encode import encode_corpus_ray
from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output
from retrieval.encoding import encode_corpus
from retrieval.models import DualEncoder

ENCODING_STAGES = ("mine", "augment")  # stages that encode the corpus and keep the vectors


def embeddings_source(config: PipelineConfig, model_stage: str, reader: str) -> Output | None:
    """The embeddings table of the corpus by ``model_stage``'s dual encoder that a stage before
    ``reader`` wrote, if one did."""
    for producer in ENCODING_STAGES:
        before = STAGE_ORDER.index(producer) < STAGE_ORDER.index(reader)
        if not (before and config.enabled(producer)):
            continue
        if last_dual_before(config, producer) != model_stage:
            continue
        if producer == "mine" or embeddings_source(config, model_stage, producer) is None:
            return Output(producer, "embeddings")
    return None


def encode_stage_corpus(
    ctx: StageContext, corpus: Path, model_dir: Path, model: DualEncoder, out: Path
) -> None:
    """Embeddings of the ``corpus`` table by ``model`` (saved at ``model_dir``) at ``out``."""
    section = ctx.section
    if section.encode_actors:
        encode_corpus_ray(
            model_dir, corpus, out, section.encode_actors, section.batch_size,
            precision=ctx.config.precision, cpus_per_actor=section.actor_cpus,
            gpus_per_actor=section.actor_gpus,
        )  # fmt: skip
    else:
        encode_corpus(model, corpus, out, section.batch_size, precision=ctx.config.precision)
