"""Corpus embeddings in the pipeline: encoded through the inference layer (in the driver with
``actors: 0``, else on Ray Data actors), and computed once per model per run: a stage that
needs the corpus encoded by a model that an earlier stage already encoded it with reads those
embeddings instead (``embeddings_source``), so mine's vectors serve augment and evaluate."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.inference.steps import encode_corpus_table
from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output

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


def encode_stage_corpus(ctx: StageContext, corpus: Path, model_dir: Path, out: Path) -> None:
    """Embeddings of the ``corpus`` table by the dual encoder saved at ``model_dir``, at ``out``."""
    encode_corpus_table(model_dir, corpus, out, ctx.section.inference(), ctx.config.precision,
                        parts=ctx.parts(f"{Path(out).name}-{Path(model_dir).name}"))  # fmt: skip
