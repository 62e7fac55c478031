"""The corpus encoding of the mine and augment stages: in the driver process, or on Ray Data
actors across the cluster (``encode_actors`` in the stage's section); the same table either way."""

from __future__ import annotations

from pathlib import Path

from pipelines.ray_encode import encode_corpus_ray
from pipelines.stages.context import StageContext
from retrieval.encoding import encode_corpus
from retrieval.models import DualEncoder


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
