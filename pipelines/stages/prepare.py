"""Stage prepare: raw dataset -> corpus, queries-SPLIT, qrels-SPLIT tables in the run directory.

``data.max_corpus`` keeps every judged passage plus the first N others, for quick runs.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.stages.context import StageContext
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


def run(ctx: StageContext) -> dict:
    data = ctx.config.data
    splits = list(dict.fromkeys([data.train_split, data.eval_split]))
    if data.beir is not None:
        prepare_beir(data.beir, ctx.out, splits=splits)
    else:
        ctx.out.mkdir(parents=True)
        kinds = ("queries", "qrels", "answers", "examples")
        for name in ["corpus", *[f"{kind}-{s}" for s in splits for kind in kinds]]:
            if table_exists(data.tables / name):
                shutil.copytree(data.tables / name, ctx.out / name)
    if data.max_corpus:
        shrink_corpus(ctx.out, splits, data.max_corpus)
    return {
        name: read_manifest(ctx.out / name)["rows"]
        for name in sorted(p.name for p in ctx.out.iterdir() if table_exists(p))
    }
