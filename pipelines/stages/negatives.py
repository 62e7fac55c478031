"""Training examples whose negatives come from a candidates table (a retriever's ranked lists):
the mine stage's dense candidates and train_dual_0's BM25 candidates go through the same rules.

Positives come from the split's examples table or its qrels; negatives are the top ``keep``
candidates that are not positives (replacing any negatives the dataset came with) and, when the
split has answers (NQ), hold none of them in their body: as in DPR, such a passage is likely a
false negative (retrieval/answers_match.py). Examples are built a chunk at a time, each chunk's
lists taken from the candidates table, which is read once (retrieval/tables/regroup.py), so
memory follows the chunk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa

from pipelines.stages.positive_aware import PositiveAware
from retrieval.answers_match import drop_answer_passages
from retrieval.tables.labels import body_texts, read_answers
from retrieval.tables.regroup import MOST_ROWS, rows_for_chunks, rows_per_chunk
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import table_exists
from retrieval.training.examples import load_examples

CHUNK_QUERIES = MOST_ROWS  # examples built at a time, at most (fewer for long lists: regroup.py)


def with_negatives(rows: list[dict], ranked: dict, tables: Path, split: str, keep: int):
    """``rows`` (examples) with their negatives taken from ``ranked`` (qid -> pids in rank
    order) by the rules above."""
    for row in rows:
        positives = set(row["positives"])
        row["negatives"] = [p for p in ranked.get(row["qid"], []) if p not in positives]
    if table_exists(tables / f"answers-{split}"):
        answers = read_answers(tables / f"answers-{split}")
        drop_answer_passages(rows, answers, partial(body_texts, tables / "corpus"), keep)
    for row in rows:
        row["negatives"] = row["negatives"][:keep]
    return rows


def examples_from_candidates(
    tables: Path, split: str, candidates: Path, keep: int, counts: Counter | None = None,
    work: Path | None = None, positive_aware: PositiveAware | None = None,
) -> Iterator[pa.Table]:  # fmt: skip
    """The split's examples with negatives from the ``candidates`` table, a chunk at a time;
    ``counts["examples_with_negatives"]`` counts those that got any, ``counts["negatives"]``
    the negatives kept. ``work``: a folder for the candidates regrouped by chunk (default: a
    temporary one). ``positive_aware``: only the candidates that rule keeps can be negatives
    (pipelines/stages/positive_aware.py)."""
    examples = load_examples(tables, split, None)
    columns = ["pids"] if positive_aware is None else ["pids", "scores"]
    for rows, found in chunks_with_lists(examples, candidates, columns, work):
        if positive_aware is None:
            ranked = {q: v[0] for q, v in found.items()}
        else:
            ranked = {
                row["qid"]: positive_aware.negatives(row, *found[row["qid"]])
                for row in rows
                if row["qid"] in found
            }
        rows = with_negatives(rows, ranked, tables, split, keep)
        if counts is not None:
            counts.update(
                examples_with_negatives=sum(1 for r in rows if r["negatives"]),
                negatives=sum(len(r["negatives"]) for r in rows),
            )
        yield pa.Table.from_pylist(rows, schema=EXAMPLES)


def chunks_with_lists(
    examples: pa.Table, candidates: Path, columns: list[str], work: Path | None = None
) -> Iterator[tuple[list[dict], dict[str, tuple]]]:
    """The examples a chunk at a time as rows, each chunk with ``{qid: (its candidates'
    columns)}`` for its queries (the candidates table read once: regroup.py)."""
    size = rows_per_chunk(candidates, "pids", CHUNK_QUERIES)
    starts = range(0, examples.num_rows, size)
    chunks = [examples["qid"].slice(s, size).to_pylist() for s in starts]
    found_by_chunk = rows_for_chunks(candidates, "qid", chunks, columns, work)
    for start, found in zip(starts, found_by_chunk):
        yield examples.slice(start, size).to_pylist(), found
