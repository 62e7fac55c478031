"""The retriever's score of each positive that its own search did not return, for positive-aware
mining (pipelines/stages/positive_aware.py): query vector . passage vector, as the exact
inner-product search scores them.

Only the rows asked for are kept: each vectors table is read a shard at a time and filtered to
the ids needed, so memory follows the missing positives, never the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.stages.negatives import chunks_with_lists
from retrieval.indexing.vectors import arrow_to_matrix
from retrieval.tables.store import iter_shards
from retrieval.training.examples import load_examples


def vectors_of(table_dir: str | os.PathLike, key: str, ids: Iterable[str]) -> dict[str, np.ndarray]:
    """``{id: float32 vector}`` of the rows of a vectors table (``key``, ``vector``) whose
    ``key`` is in ``ids``."""
    wanted = pa.array(sorted(set(ids)), type=pa.string())
    found: dict[str, np.ndarray] = {}
    if len(wanted) == 0:
        return found
    for shard in iter_shards(table_dir, columns=[key, "vector"]):
        shard = shard.filter(pc.is_in(shard[key], value_set=wanted))
        if shard.num_rows:
            found.update(zip(shard[key].to_pylist(), arrow_to_matrix(shard["vector"])))
    return found


def pair_scores(
    pairs: Iterable[tuple[str, str]],
    query_vectors: str | os.PathLike,
    embeddings: str | os.PathLike,
) -> dict[tuple[str, str], float]:
    """``{(qid, pid): query vector . passage vector}`` for each pair; a qid or pid without a
    vector is an error naming it (the stage encoded every query and passage)."""
    pairs = list(dict.fromkeys(pairs))
    queries = vectors_of(query_vectors, "qid", (q for q, _ in pairs))
    passages = vectors_of(embeddings, "pid", (p for _, p in pairs))
    scores = {}
    for qid, pid in pairs:
        if qid not in queries or pid not in passages:
            missing = f"query {qid}" if qid not in queries else f"passage {pid}"
            raise KeyError(f"no vector for {missing} in {query_vectors} / {embeddings}")
        scores[(qid, pid)] = float(np.dot(queries[qid], passages[pid]))
    return scores


def unlisted_positive_scores(
    tables: Path, split: str, candidates: Path, query_vectors: Path, embeddings: Path,
    work: Path | None = None,
) -> dict[tuple[str, str], float]:  # fmt: skip
    """``{(qid, pid): score}`` of every positive of the split's examples that its query's list
    in ``candidates`` does not hold (a query without a list has none scored: it gets no
    negatives anyway)."""
    examples = load_examples(tables, split, None)
    pairs = []
    for rows, found in chunks_with_lists(examples, candidates, ["pids"], work):
        for row in rows:
            if row["qid"] in found:
                listed = set(found[row["qid"]][0])
                pairs += [(row["qid"], p) for p in row["positives"] if p not in listed]
    return pair_scores(pairs, query_vectors, embeddings)
