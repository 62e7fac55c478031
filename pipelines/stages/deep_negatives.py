"""train_cross's deep negatives: besides mine's top-ranked negatives, N more drawn at random from
the rest of the retriever's list (``stages.train_cross.deep_negatives``).

mine keeps each query's top ``negatives`` non-positives, so a re-ranker trained on those alone
never meets the passages ranked below them, yet re-ranking a top 100 is mostly such passages:
it has never been taught to push them down (docs/reranker.md). RocketQA draws its
cross-encoder's negatives from the retriever's whole top-k. The draw is seeded per query, so a
rerun trains on the same lists; when the split has answers (NQ), a passage holding one is never
drawn (as mine's own negatives, retrieval/answers_match.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa

from retrieval.answers_match import drop_answer_passages
from retrieval.tables.labels import body_texts, read_answers
from retrieval.tables.regroup import MOST_ROWS, rows_for_chunks, rows_per_chunk
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import iter_shards, table_exists, write_table

CHUNK_QUERIES = MOST_ROWS  # examples drawn for at a time, at most (fewer for long lists)


def add_deep_negatives(rows: list[dict], ranked: dict, count: int, seed: int) -> list[dict]:
    """Each row's negatives followed by ``count`` passages drawn from its ``ranked`` list (qid ->
    pids in rank order) that are neither positives nor already negatives; fewer if the list
    holds fewer. Rows are changed in place and returned."""
    for row in rows:
        taken = set(row["positives"]) | set(row["negatives"])
        rest = [pid for pid in ranked.get(row["qid"], []) if pid not in taken]
        draw = random.Random(f"{seed}:{row['qid']}").sample(rest, min(count, len(rest)))
        row["negatives"] = list(row["negatives"]) + draw
    return rows


def deep_examples(
    tables: Path, split: str, examples: Path, candidates: Path, count: int, seed: int, out: Path
) -> Path:
    """``examples`` with deep negatives from ``candidates``, written to ``out``, one shard of
    examples (and its queries' lists) in memory at a time."""
    write_table(out, _shards(tables, split, examples, candidates, count, seed), EXAMPLES)
    return out


def _shards(
    tables: Path, split: str, examples: Path, candidates: Path, count: int, seed: int
) -> Iterator[pa.Table]:
    answers_table = tables / f"answers-{split}"
    answers = read_answers(answers_table) if table_exists(answers_table) else None
    size = rows_per_chunk(candidates, "pids", CHUNK_QUERIES)
    chunks = [piece["qid"].to_pylist() for piece in pieces(examples, size, ["qid"])]
    found_by_chunk = rows_for_chunks(candidates, "qid", chunks, ["pids"])
    for piece, found in zip(pieces(examples, size), found_by_chunk):
        rows = piece.to_pylist()
        ranked = {qid: list(value[0]) for qid, value in found.items()}
        if answers is not None:
            ranked = _without_answers(ranked, answers, tables)
        yield pa.Table.from_pylist(add_deep_negatives(rows, ranked, count, seed), schema=EXAMPLES)


def pieces(table: Path, rows: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The table's shards cut into pieces of at most ``rows`` rows, in order."""
    for shard in iter_shards(table, columns=columns):
        for start in range(0, shard.num_rows, rows):
            yield shard.slice(start, rows)


def _without_answers(ranked: dict, answers: dict, tables: Path) -> dict:
    """The lists with every passage that holds one of its question's answers removed."""
    lists = [{"qid": qid, "negatives": pids} for qid, pids in ranked.items()]
    drop_answer_passages(lists, answers, partial(body_texts, tables / "corpus"))
    return {row["qid"]: row["negatives"] for row in lists}
