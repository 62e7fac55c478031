"""mine's title queries (``stages.mine.title_queries: N``): N passages' titles become queries
whose positive is their own passage and whose negatives are the dense retriever's top other
passages, and train_cross trains on them beside the labelled queries.

Why: SciFact's re-ranker learns its 709 training claims by heart and loses on new ones;
titles give it many more queries from the corpus itself, with no labels. Measured there, they
hurt (docs/reranker.md: a title finds its own passage too easily, unlike a claim), so it is off
by default, for corpora whose titles read like their queries.
A retrieved passage with the very same title as the query's own (one article cut into several
passages, as in NQ's Wikipedia) is not taken as a negative: it is likely about the same thing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.inference.search import search_table
from pipelines.inference.steps import encode_queries_table
from pipelines.stages.context import StageContext
from pipelines.stages.titles import drawn_titles
from retrieval.tables.lookup import rows_by_id
from retrieval.tables.schemas import EXAMPLES, QUERIES
from retrieval.tables.store import iter_shards, write_table

QID_PREFIX = "title-"


def mine_titles(ctx: StageContext, model_dir: Path, embeddings: Path) -> int:
    """Write ``queries-titles``, ``candidates-titles`` and ``examples-titles`` into the stage's
    output; returns how many titles were drawn."""
    section = ctx.section
    drawn = drawn_titles(ctx.tables / "corpus", section.title_queries, ctx.config.seed)
    queries = ctx.out / "queries-titles"
    write_table(queries, ({"qid": QID_PREFIX + pid, "text": t} for pid, t in drawn), QUERIES)
    vectors = ctx.work / "query-vectors-titles"
    shutil.rmtree(vectors, ignore_errors=True)
    encode_queries_table(model_dir, queries, vectors, section.inference(), ctx.config.precision,
                         parts=ctx.parts("query-vectors-titles"))  # fmt: skip
    candidates = ctx.out / "candidates-titles"
    search_table(vectors, embeddings, section.depth, section.inference(), candidates,
                 parts=ctx.parts("candidates-titles"), **section.search_keys())  # fmt: skip
    rows = title_examples(dict(drawn), candidates, ctx.tables / "corpus", section.negatives)
    write_table(ctx.out / "examples-titles", rows, EXAMPLES)
    return len(drawn)


def title_examples(
    titles: dict[str, str], candidates: Path, corpus: Path, keep: int
) -> Iterator[pa.Table]:
    """An example per title query of ``candidates``, a shard of lists at a time: its own
    passage (``titles``: pid -> title) as positive, the top ``keep`` others as negatives,
    passages with the same title left out."""
    for shard in iter_shards(candidates, ["qid", "pids"]):
        lists = shard.to_pylist()
        pids = {pid for row in lists for pid in row["pids"]}
        title_of = {
            pid: value[0] for pid, value in rows_by_id(corpus, "pid", pids, ["title"]).items()
        }
        rows = []
        for row in lists:
            own = row["qid"].removeprefix(QID_PREFIX)
            title = titles[own]
            others = [p for p in row["pids"] if p != own and title_of.get(p) != title]
            rows.append({"qid": row["qid"], "query": title, "positives": [own],
                         "negatives": others[:keep]})  # fmt: skip
        yield pa.Table.from_pylist(rows, schema=EXAMPLES)
