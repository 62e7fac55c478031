"""Stage mine: the current dual encoder retrieves top-k passages for every training query;
the top non-positive ones become hard-negative candidates (RocketQA's mined negatives).

Everything streams: corpus and queries are encoded by the inference layer, the search runs a
chunk of queries at a time over searchers that each hold part of the corpus vectors, and the
examples are built a chunk at a time; the driver never holds the corpus, its vectors or all
candidates. With ``title_queries: N`` it also mines N corpus titles as queries for train_cross
(pipelines/stages/title_queries.py); with ``positive_aware`` only candidates scored clearly
below the query's positive can be negatives (pipelines/stages/positive_aware.py)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.config import MineStage, PipelineConfig
from pipelines.inference.search import search_table
from pipelines.inference.steps import encode_queries_table
from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import encode_stage_corpus
from pipelines.stages.negatives import examples_from_candidates
from pipelines.stages.positive_aware import PositiveAware
from pipelines.stages.positive_scores import unlisted_positive_scores
from pipelines.stages.spec import Output, StageSpec
from pipelines.stages.title_queries import mine_titles
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import write_table


def spec(config: PipelineConfig, name: str) -> StageSpec:
    split = config.data.train_split
    return StageSpec(
        reads={
            "tables": Output("prepare"),
            "model": Output(last_dual_before(config, name), "model"),
        },
        writes=("embeddings", f"candidates-{split}", f"examples-{split}", *title_tables(config)),
    )


def title_tables(config: PipelineConfig) -> tuple[str, ...]:
    """The title queries' tables mine writes when ``title_queries`` is set."""
    if not config.stages.mine.title_queries:
        return ()
    return ("queries-titles", "candidates-titles", "examples-titles")


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.train_split
    model_dir = ctx.path("model")
    ctx.out.mkdir(parents=True)
    embeddings = ctx.out / "embeddings"
    encode_stage_corpus(ctx, ctx.tables / "corpus", model_dir, embeddings)
    vectors = ctx.work / f"query-vectors-{split}"
    shutil.rmtree(vectors, ignore_errors=True)
    queries = encode_queries_table(
        model_dir, ctx.tables / f"queries-{split}", vectors, section.inference(),
        ctx.config.precision, parts=ctx.parts(f"query-vectors-{split}"),
    )  # fmt: skip
    candidates = ctx.out / f"candidates-{split}"
    search_table(vectors, embeddings, section.depth, section.inference(), candidates,
                 parts=ctx.parts(f"candidates-{split}"), **section.search_keys())  # fmt: skip
    counts: Counter = Counter()
    examples = mine_examples(
        section, ctx.tables, split, candidates, vectors, embeddings, counts, ctx.work / "regroup"
    )
    write_table(ctx.out / f"examples-{split}", examples, EXAMPLES)
    metrics = {
        "queries": queries["rows"],
        "examples_with_negatives": counts["examples_with_negatives"],
        "negatives": counts["negatives"],
    }
    if section.title_queries:
        metrics["title_queries"] = mine_titles(ctx, model_dir, embeddings)
    return metrics


def mine_examples(
    section: MineStage, tables: Path, split: str, candidates: Path, query_vectors: Path,
    embeddings: Path, counts: Counter, work: Path,
) -> Iterator[pa.Table]:  # fmt: skip
    """The split's examples with the section's mined negatives: the top ``negatives``
    non-positives of each list, or, with ``positive_aware``, of those its rule keeps (the
    scores of positives the search missed computed from the query and passage vectors)."""
    aware = None
    rule = section.positive_aware
    if rule is not None:
        unlisted = {}
        if rule.needs_scores():
            unlisted = unlisted_positive_scores(
                tables, split, candidates, query_vectors, embeddings, work
            )
        aware = PositiveAware(rule, unlisted)
    return examples_from_candidates(
        tables, split, candidates, section.negatives, counts, work, aware
    )
