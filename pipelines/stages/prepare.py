"""Stage prepare: raw dataset -> corpus, queries-SPLIT, qrels-SPLIT tables in the run directory.

``data.max_corpus`` keeps every judged passage plus the first N others, for quick runs.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import PipelineConfig
from pipelines.stages.context import StageContext
from pipelines.stages.spec import External, StageSpec
from retrieval.tables.readers import prepare_beir
from retrieval.tables.schemas import CORPUS
from retrieval.tables.store import read_manifest, read_table, table_exists, write_table


def shrink_corpus(tables, splits: list[str], keep_others: int) -> int:
    """Keep judged passages and the first ``keep_others`` unjudged ones; returns rows kept."""
    judged = pa.concat_arrays(
        [read_table(tables / f"qrels-{s}", columns=["pid"])["pid"].combine_chunks() for s in splits]
    )
    corpus = read_table(tables / "corpus")
    is_judged = pc.is_in(corpus["pid"], value_set=pc.unique(judged))
    others = pc.cumulative_sum(pc.cast(pc.invert(is_judged), pa.int64()))
    keep = pc.or_(is_judged, pc.less_equal(others, keep_others))
    kept = corpus.filter(keep)
    write_table(tables / "corpus", kept, CORPUS)
    return kept.num_rows


def splits(config: PipelineConfig) -> list[str]:
    return list(dict.fromkeys([config.data.train_split, config.data.eval_split]))


def spec(config: PipelineConfig, name: str) -> StageSpec:
    data = config.data
    optional = [f"{kind}-{s}" for s in splits(config) for kind in ("qrels", "answers", "examples")]
    return StageSpec(
        reads={"data": External(data.beir or data.tables)},
        writes=("corpus", *[f"queries-{s}" for s in splits(config)]),
        may_write=tuple(optional),
    )


def run(ctx: StageContext) -> dict:
    data, source = ctx.config.data, ctx.path("data")
    if data.beir is not None:
        prepare_beir(source, ctx.out, splits=splits(ctx.config))
    else:
        ctx.out.mkdir(parents=True)
        kinds = ("queries", "qrels", "answers", "examples")
        for name in ["corpus", *[f"{kind}-{s}" for s in splits(ctx.config) for kind in kinds]]:
            if table_exists(source / name):
                shutil.copytree(source / name, ctx.out / name)
    if data.max_corpus:
        shrink_corpus(ctx.out, splits(ctx.config), data.max_corpus)
    return {
        name: read_manifest(ctx.out / name)["rows"]
        for name in sorted(p.name for p in ctx.out.iterdir() if table_exists(p))
    }
