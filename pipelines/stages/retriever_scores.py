"""train_cross's teacher scores for loss listwise_ce_kl: the retriever's score of each positive
and negative of an example, read from mine's ranked lists of the same queries.

Every negative train_cross draws comes from those lists (mine's top ones and the deep ones), so
each has a score; a positive the retriever did not return in its top ``depth`` has none and
gets NaN, which leaves that example's list to the cross-entropy alone (losses/teacher_kl.py).
One chunk of examples and its queries' lists is in memory at a time, as for deep negatives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.stages.deep_negatives import pieces
from retrieval.tables.regroup import MOST_ROWS, rows_for_chunks, rows_per_chunk
from retrieval.tables.schemas import EXAMPLES, SCORED_EXAMPLES
from retrieval.tables.store import write_table

CHUNK_QUERIES = MOST_ROWS  # examples scored at a time, at most (fewer for long lists)


def with_scores(rows: list[dict], lists: dict[str, dict[str, float]]) -> list[dict]:
    """Each row with ``positive_scores`` and ``negative_scores``: the score of each passage in
    its query's ``lists`` entry (pid -> score), NaN where the list lacks it."""
    for row in rows:
        scores = lists.get(row["qid"], {})
        row["positive_scores"] = [scores.get(pid, math.nan) for pid in row["positives"]]
        row["negative_scores"] = [scores.get(pid, math.nan) for pid in row["negatives"]]
    return rows


def scored_examples(examples: Path, candidates: Path, out: Path) -> Path:
    """``examples`` with the retriever's scores from ``candidates`` (qid, pids, scores), written
    to ``out``."""
    write_table(out, _shards(examples, candidates), SCORED_EXAMPLES)
    return out


def _shards(examples: Path, candidates: Path) -> Iterator[pa.Table]:
    size = rows_per_chunk(candidates, "pids", CHUNK_QUERIES)
    chunks = [piece["qid"].to_pylist() for piece in pieces(examples, size, ["qid"])]
    found_by_chunk = rows_for_chunks(candidates, "qid", chunks, ["pids", "scores"])
    for piece, found in zip(pieces(examples, size), found_by_chunk):
        lists = {qid: dict(zip(pids, scores)) for qid, (pids, scores) in found.items()}
        rows = piece.select(EXAMPLES.names).to_pylist()
        yield pa.Table.from_pylist(with_scores(rows, lists), schema=SCORED_EXAMPLES)
