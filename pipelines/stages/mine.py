"""Stage mine: the current dual encoder retrieves top-k passages for every training query;
the top non-positive ones become hard-negative candidates (RocketQA's mined negatives).

Everything streams: corpus and queries are encoded by the inference layer, the search runs a
chunk of queries at a time over searchers that each hold part of the corpus vectors, and the
examples are built a chunk at a time; the driver never holds the corpus, its vectors or all
candidates."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa

from pipelines.config import PipelineConfig
from pipelines.inference.search import search_table
from pipelines.inference.steps import encode_queries_table
from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import encode_stage_corpus
from pipelines.stages.spec import Output, StageSpec
from retrieval.answers_match import drop_answer_passages
from retrieval.evaluator import body_texts, read_answers
from retrieval.tables.lookup import rows_by_id
from retrieval.tables.schemas import CANDIDATES, EXAMPLES
from retrieval.tables.store import table_exists, write_table
from retrieval.training.examples import load_examples

CHUNK_QUERIES = 20_000  # examples built at a time


def mined_examples(tables: Path, split: str, candidates: pa.Table, keep: int) -> list[dict]:
    """Positives from the examples table or the qrels; negatives: the top ``keep`` retrieved
    passages that are not positives (replacing any negatives the dataset came with) and, when
    the split has answers (NQ), hold none of them in their body: as in DPR, such a passage is
    likely a false negative (retrieval/answers_match.py)."""
    ranked = dict(zip(candidates["qid"].to_pylist(), candidates["pids"].to_pylist()))
    rows = load_examples(tables, split, None).to_pylist()
    return _with_negatives(rows, ranked, tables, split, keep)


def _with_negatives(rows: list[dict], ranked: dict, tables: Path, split: str, keep: int):
    for row in rows:
        positives = set(row["positives"])
        row["negatives"] = [p for p in ranked.get(row["qid"], []) if p not in positives]
    if table_exists(tables / f"answers-{split}"):
        answers = read_answers(tables / f"answers-{split}")
        drop_answer_passages(rows, answers, partial(body_texts, tables / "corpus"), keep)
    for row in rows:
        row["negatives"] = row["negatives"][:keep]
    return rows


def mined_chunks(
    tables: Path, split: str, candidates: Path, keep: int, counts: Counter
) -> Iterator[pa.Table]:
    """mined_examples a chunk of examples at a time, each chunk's candidates read by qid from
    the ``candidates`` table."""
    examples = load_examples(tables, split, None)
    for start in range(0, examples.num_rows, CHUNK_QUERIES):
        rows = examples.slice(start, CHUNK_QUERIES).to_pylist()
        found = rows_by_id(candidates, "qid", [r["qid"] for r in rows], ["pids"])
        ranked = {qid: value[0] for qid, value in found.items()}
        rows = _with_negatives(rows, ranked, tables, split, keep)
        counts.update(examples_with_negatives=sum(1 for r in rows if r["negatives"]))
        yield pa.Table.from_pylist(rows, schema=EXAMPLES)


def spec(config: PipelineConfig, name: str) -> StageSpec:
    split = config.data.train_split
    return StageSpec(
        reads={
            "tables": Output("prepare"),
            "model": Output(last_dual_before(config, name), "model"),
        },
        writes=("embeddings", f"candidates-{split}", f"examples-{split}"),
    )


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
        ctx.config.precision,
    )  # fmt: skip
    candidates = ctx.out / f"candidates-{split}"
    found = search_table(vectors, embeddings, section.depth, section.inference(), section.factory,
                         use_gpu=section.faiss_gpu)  # fmt: skip
    write_table(candidates, found, CANDIDATES)
    counts: Counter = Counter()
    write_table(
        ctx.out / f"examples-{split}",
        mined_chunks(ctx.tables, split, candidates, section.negatives, counts),
        EXAMPLES,
    )
    return {
        "queries": queries["rows"],
        "examples_with_negatives": counts["examples_with_negatives"],
    }
