"""Top-k search of query vectors over an embeddings table, on searchers that scale with devices.

``split: queries`` (``auto`` when the whole index fits ``searcher_memory_gb``: MS MARCO's fp16
Flat index is 13.6 GB, NQ's 32 GB): every searcher (a Ray actor with ``actors: N``, else one in
the driver) holds the whole index and searches its own slices of the queries, writing their
candidates as parts of the output table itself (steps.run_step): N searchers, N times the
throughput, and the driver receives only part entries. ``split: corpus``, for an index larger
than one searcher can hold: each searcher holds a contiguous block of the table's shards, every
chunk of queries goes to all of them and their top-k lists are merged in the driver by score,
then global row (``TopK``), as one index over the whole table would rank them; the driver holds
one chunk of queries and its results, never the corpus vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipelines.driver_traffic import received
from pipelines.inference.settings import InferenceSettings
from pipelines.inference.steps import run_step
from pipelines.inference.workers import QUERY_VECTORS, read_slice
from retrieval.indexing import FaissIndex
from retrieval.indexing.faiss_index import sample_rows
from retrieval.indexing.sharded_search import TopK
from retrieval.indexing.vectors import arrow_to_matrix
from retrieval.retriever import to_candidates
from retrieval.tables.schemas import CANDIDATES
from retrieval.tables.store import iter_shards, read_manifest, shard_paths, write_table

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
    blocks = shard_blocks(embeddings_dir, max(1, settings.count()))
    if settings.count() == 0:
        return [ShardSearcher(p, o, factory, metric, use_gpu) for p, o in blocks]
    import ray

    remote = ray.remote(
        num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor,
        max_restarts=-1, max_task_retries=-1,  # a lost searcher is rebuilt, its search retried
    )  # fmt: skip
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
        yield received(ray.get(done[0]))


SPLITS = ("auto", "queries", "corpus")
QUERY_ROWS = 2048  # queries a searcher takes per call (split: queries)


class Searcher:
    """Query slice (qid, vector) -> candidates (qid, pids, scores) over the whole index, which
    this worker builds once from every shard of the embeddings table (split: queries)."""

    def __init__(self, embeddings_dir, k, factory, metric, use_gpu, *, gpu=False, cpus=None):
        if cpus is not None:  # a Ray actor: FAISS's threads follow the CPUs it reserved
            import faiss

            faiss.omp_set_num_threads(max(1, int(cpus)))
        paths = [str(p) for p in shard_paths(embeddings_dir)]
        self.index, self.k = ShardSearcher(paths, 0, factory, metric, use_gpu), k

    def __call__(self, batch: dict) -> pa.Table:
        rows = read_slice(batch, [QUERY_VECTORS, "vector"])
        scores, _, pids = self.index.search(arrow_to_matrix(rows["vector"]), self.k)
        return to_candidates(rows[QUERY_VECTORS].to_pylist(), scores, pids)


def index_gb(embeddings_dir: str | os.PathLike) -> float:
    """The whole table as a float32 FAISS Flat index, in GB (other factories hold less)."""
    manifest = read_manifest(embeddings_dir)
    return manifest["rows"] * manifest["meta"]["dim"] * 4 / 1e9


def split_of(embeddings_dir, settings: InferenceSettings, split: str, memory_gb: float) -> str:
    """``queries`` or ``corpus``: ``auto`` splits the queries when the index fits one searcher."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split != "auto":
        return split
    fits = index_gb(embeddings_dir) <= memory_gb
    return "queries" if settings.count() <= 1 or fits else "corpus"


def search_table(
    query_vectors: str | os.PathLike,
    embeddings_dir: str | os.PathLike,
    k: int,
    settings: InferenceSettings,
    out: str | os.PathLike,
    factory: str = "Flat",
    metric: str = "ip",
    use_gpu: bool = False,
    split: str = "auto",
    memory_gb: float = 40.0,
    parts: str | os.PathLike | None = None,
) -> dict:
    """The candidates table (qid, pids, scores in rank order) at ``out`` for every row of the
    ``query_vectors`` table (qid, vector), in its order; returns its manifest."""
    how = split_of(embeddings_dir, settings, split, memory_gb)
    logger.info("searching %s: top %d, split by %s", embeddings_dir, k, how)
    if how == "corpus":
        found = _search_by_corpus(query_vectors, embeddings_dir, k, settings, factory, metric,
                                  use_gpu)  # fmt: skip
        return write_table(out, found, CANDIDATES)
    args = (str(embeddings_dir), k, factory, metric, use_gpu)
    plan = {"step": "search", "k": k, "factory": factory, "metric": metric,
            "index": [e["sha256"] for e in read_manifest(embeddings_dir)["files"]]}  # fmt: skip
    return run_step(Searcher, args, Path(query_vectors), QUERY_ROWS, Path(out), settings,
                    CANDIDATES, plan, parts, "search")  # fmt: skip


def _search_by_corpus(
    query_vectors, embeddings_dir, k, settings, factory, metric, use_gpu
) -> Iterator[pa.Table]:
    """Candidates tables a chunk of queries at a time, each chunk searched by every block's
    searcher and merged here (split: corpus)."""
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
