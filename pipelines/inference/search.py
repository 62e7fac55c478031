"""Exact top-k search of query vectors over an embeddings table split across searchers.

Each searcher (a Ray actor with ``actors: N``, else one object in the driver) holds a FAISS index
over a contiguous block of the table's shards; every chunk of queries goes to all of them and
their top-k lists are merged by score, then global row (``TopK``), as one index over the whole
table would rank them. The driver holds one chunk of queries and its results, never the corpus
vectors; the candidates stream into a table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipelines.inference.settings import InferenceSettings
from pipelines.inference.workers import QUERY_VECTORS
from retrieval.indexing import FaissIndex
from retrieval.indexing.faiss_index import sample_rows
from retrieval.indexing.sharded_search import TopK
from retrieval.indexing.vectors import arrow_to_matrix
from retrieval.retriever import to_candidates
from retrieval.tables.store import iter_shards, read_manifest, shard_paths

logger = logging.getLogger(__name__)
QUERY_CHUNK = 8192  # queries searched at a time, at most
# ... and at most this many results (query, pid) per chunk: each result is a Python string in
# the driver (~60 bytes), so at k = 1000 a chunk of 8192 queries would be ~0.5 GB per searcher
CHUNK_RESULTS = 1_000_000


def query_chunk(k: int) -> int:
    """Queries searched at a time for top ``k``: driver memory follows this times ``k``."""
    return max(1, min(QUERY_CHUNK, CHUNK_RESULTS // k))


class ShardSearcher:
    """A FAISS index over some shards of an embeddings table; ids are global row numbers."""

    def __init__(self, paths, offset, factory="Flat", metric="ip", use_gpu=False, sample=100_000):
        tables = [pq.read_table(str(p)) for p in paths]
        vectors = np.concatenate([arrow_to_matrix(t["vector"]) for t in tables])
        self.index = FaissIndex(vectors.shape[1], factory, metric, use_gpu)
        if not self.index.is_trained:
            self.index.train(sample_rows(vectors, sample))
        self.index.add(vectors, pa.concat_arrays([t["pid"].combine_chunks() for t in tables]))
        self.offset = offset

    def search(self, queries: np.ndarray, k: int):
        """(scores, global rows with -1 for padding, pids) of this block's top ``k``."""
        scores, ids = self.index.search_ids(queries, k)
        return scores, np.where(ids < 0, -1, ids + self.offset), self.index.pids_of(ids)


def shard_blocks(embeddings_dir: str | os.PathLike, parts: int) -> list[tuple[list[str], int]]:
    """The table's shards cut into at most ``parts`` contiguous blocks of about equal rows:
    ``(paths, global row of the block's first row)`` each."""
    files = read_manifest(embeddings_dir)["files"]
    total = sum(entry["rows"] for entry in files)
    blocks: list[tuple[list[str], int]] = []
    block_rows = start = 0
    for path, entry in zip(shard_paths(embeddings_dir), files):
        if not blocks or (block_rows >= total / parts and len(blocks) < parts):
            blocks.append(([], start))
            block_rows = 0
        blocks[-1][0].append(str(path))
        block_rows += entry["rows"]
        start += entry["rows"]
    return blocks


def _searchers(embeddings_dir, settings: InferenceSettings, factory, metric, use_gpu) -> list:
    blocks = shard_blocks(embeddings_dir, max(1, settings.actors))
    if settings.actors == 0:
        return [ShardSearcher(p, o, factory, metric, use_gpu) for p, o in blocks]
    import ray

    remote = ray.remote(num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor)
    actor = remote(ShardSearcher)
    logger.info("searching %s on %d Ray actors", embeddings_dir, len(blocks))
    return [actor.remote(p, o, factory, metric, use_gpu) for p, o in blocks]


def _search_all(searchers: list, queries: np.ndarray, k: int) -> Iterator[tuple]:
    """Each searcher's top ``k`` of ``queries``, one at a time as they finish, so the driver
    holds the running top k and one searcher's lists, not all of them at once (at k = 1000 a
    chunk's lists are ~0.5 GB of pid strings per searcher). TopK's merge does not depend on
    the order of pushes."""
    if not searchers or not hasattr(searchers[0].search, "remote"):
        yield from (s.search(queries, k) for s in searchers)
        return
    import ray

    ref = ray.put(queries)
    pending = [s.search.remote(ref, k) for s in searchers]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def search_table(
    query_vectors: str | os.PathLike,
    embeddings_dir: str | os.PathLike,
    k: int,
    settings: InferenceSettings,
    factory: str = "Flat",
    metric: str = "ip",
    use_gpu: bool = False,
) -> Iterator[pa.Table]:
    """Candidates tables (qid, pids, scores in rank order), a chunk of queries at a time, for
    every row of the ``query_vectors`` table (qid, vector) in its order."""
    searchers = _searchers(embeddings_dir, settings, factory, metric, use_gpu)
    total, size = read_manifest(query_vectors)["rows"], query_chunk(k)
    with tqdm(total=total, desc="search") as bar:
        for shard in iter_shards(query_vectors):
            for start in range(0, shard.num_rows, size):
                chunk = shard.slice(start, size)
                queries = arrow_to_matrix(chunk["vector"])
                top = TopK(len(queries), k)
                for scores, rows, pids in _search_all(searchers, queries, k):
                    top.push(scores, rows, np.asarray(pids, dtype=object))
                scores, pids = top.result()
                bar.update(chunk.num_rows)
                yield to_candidates(chunk[QUERY_VECTORS].to_pylist(), scores, pids)
