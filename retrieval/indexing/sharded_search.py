"""Searching several index shards or embeddings tables and merging into one global top-k.

The merge ranks by score, then global row, as one Flat index over all the shards would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from retrieval.indexing.faiss_index import FaissIndex
from retrieval.indexing.from_table import iter_embeddings, table_dim
from retrieval.indexing.vectors import as_matrix, check_k

_NO_POSITION = np.iinfo(np.int64).max


class TopK:
    """The running top-``k`` per query over result lists pushed one shard at a time.

    Only [nq, k] results are kept between pushes, so memory does not grow with the number of
    shards. Ties on score go to the lower global position; padding (position -1) sorts last.
    """

    def __init__(self, num_queries: int, k: int):
        check_k(k)
        self.k = k
        self.scores = np.full((num_queries, k), -np.inf, dtype=np.float32)
        self.positions = np.full((num_queries, k), _NO_POSITION, dtype=np.int64)
        self.pids = np.full((num_queries, k), "", dtype=object)

    def push(self, scores: np.ndarray, positions: np.ndarray, pids: np.ndarray) -> None:
        """Merge one shard's [nq, k'] results; ``positions`` are global rows, -1 for padding."""
        positions = np.where(positions < 0, _NO_POSITION, positions)
        scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)], axis=1)
        positions = np.concatenate([self.positions, positions], axis=1)
        pids = np.concatenate([self.pids, pids.astype(object, copy=False)], axis=1)
        order = np.lexsort((positions, -scores), axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, order, 1)
        self.positions = np.take_along_axis(positions, order, 1)
        self.pids = np.take_along_axis(pids, order, 1)

    def result(self) -> tuple[np.ndarray, list[list[str]]]:
        """(scores float32 [nq, k], pids [nq][k]), padded with ``-inf`` / ``""`` like FaissIndex."""
        return self.scores.copy(), self.pids.tolist()


def search_shards(
    shards: Sequence[FaissIndex], queries: np.ndarray, k: int
) -> tuple[np.ndarray, list[list[str]]]:
    """Search every shard and merge, as if the shards were one index in the given order.

    For Flat shards the result equals one Flat index over all vectors (the same scores; the same
    pids unless exact ties straddle the k-th place, where faiss itself picks arbitrarily).
    """
    if not shards:
        raise ValueError("search_shards needs at least one shard")
    first = shards[0]
    for i, shard in enumerate(shards):
        if shard.dim != first.dim or shard.metric != first.metric:
            raise ValueError(
                f"shard {i} is dim {shard.dim} / {shard.metric!r}, "
                f"shard 0 is dim {first.dim} / {first.metric!r}"
            )
    queries = as_matrix(queries, "queries", first.dim)
    top = TopK(len(queries), k)
    offset = 0
    for shard in shards:
        scores, ids = shard.search_ids(queries, k)
        top.push(scores, np.where(ids < 0, -1, ids + offset), shard.pids_of(ids))
        offset += len(shard)
    return top.result()


def search_tables(
    tables: Sequence[str | os.PathLike], queries: np.ndarray, k: int, metric: str = "ip"
) -> tuple[np.ndarray, list[list[str]]]:
    """Exact search over embeddings tables without building a lasting index.

    Each Parquet shard in turn goes into a temporary Flat index and is dropped after its top-k
    is merged, so memory stays at one shard, whatever the total size of the tables.
    """
    if not tables:
        raise ValueError("search_tables needs at least one table")
    dims = [table_dim(path) for path in tables]
    for path, dim in zip(tables, dims):
        if dim != dims[0]:
            raise ValueError(f"table {path} has dimension {dim}, table {tables[0]} has {dims[0]}")
    queries = as_matrix(queries, "queries", dims[0])
    top = TopK(len(queries), k)
    offset = 0
    for path in tables:
        for vectors, pids in iter_embeddings(path):
            shard = FaissIndex(dims[0], "Flat", metric)
            shard.add(vectors, pids)
            scores, ids = shard.search_ids(queries, k)
            top.push(scores, np.where(ids < 0, -1, ids + offset), shard.pids_of(ids))
            offset += len(shard)
    return top.result()
