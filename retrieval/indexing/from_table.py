"""Reading embeddings tables (``pid``, ``vector``) as float32 matrices and indexing them.

Tables are streamed shard by shard, so building an index never holds the whole corpus twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.indexing.faiss_index import FaissIndex
from retrieval.indexing.vectors import FLOAT_TYPES, arrow_to_matrix
from retrieval.tables.errors import DataError
from retrieval.tables.store import iter_shards, read_manifest, shard_paths

COLUMNS = ["pid", "vector"]
DEFAULT_TRAIN_SAMPLE = 200_000


def table_dim(path: str | os.PathLike) -> int:
    """The vector width of an embeddings table, read from its schema (no data is loaded)."""
    schema = pq.read_schema(shard_paths(path)[0])
    if "pid" not in schema.names:
        raise DataError(path, "missing column", field="pid")
    if "vector" not in schema.names:
        raise DataError(path, "missing column", field="vector")
    kind = schema.field("vector").type
    if not pa.types.is_fixed_size_list(kind) or kind.value_type not in FLOAT_TYPES:
        raise DataError(
            path, f"is {kind}, expected fixed_size_list<float32|float16>", field="vector"
        )
    return kind.list_size


def _matrix(path: str | os.PathLike, column: pa.ChunkedArray) -> np.ndarray:
    try:
        return arrow_to_matrix(column)
    except ValueError as err:
        raise DataError(path, str(err), field="vector") from None


def iter_embeddings(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, pa.Array]]:
    """Yield (vectors float32 [n, dim], pids string array) per shard; float16 is widened."""
    table_dim(path)
    for shard in iter_shards(path, columns=COLUMNS):
        yield _matrix(path, shard.column("vector")), shard.column("pid").combine_chunks()


def read_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """The whole table in memory: (vectors float32 [n, dim], pids)."""
    dim = table_dim(path)
    parts = list(iter_embeddings(path))
    if not parts:
        return np.zeros((0, dim), np.float32), []
    vectors = np.concatenate([v for v, _ in parts]) if len(parts) > 1 else parts[0][0]
    return vectors, pa.concat_arrays([p for _, p in parts]).to_pylist()


def sample_table(path: str | os.PathLike, size: int | None, seed: int = 0) -> np.ndarray:
    """``size`` uniformly random vectors of the table (all when None or larger than the table).

    Rows are drawn over the whole table using the manifest's per-shard counts, so a table sorted
    by topic or source still yields a representative training sample, in one streaming pass.
    """
    dim = table_dim(path)
    counts = [f["rows"] for f in read_manifest(path)["files"]]
    total = sum(counts)
    if size is None or size >= total:
        parts = [v for v, _ in iter_embeddings(path)]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size, replace=False))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    cuts = np.searchsorted(chosen, bounds)
    parts = []
    for i, shard in enumerate(iter_shards(path, columns=["vector"])):
        local = chosen[cuts[i] : cuts[i + 1]] - bounds[i]
        if len(local):
            parts.append(_matrix(path, shard.column("vector").take(pa.array(local))))
    return np.concatenate(parts)


def index_from_table(
    path: str | os.PathLike,
    factory: str = "Flat",
    metric: str = "ip",
    train_sample: int | None = DEFAULT_TRAIN_SAMPLE,
    seed: int = 0,
    use_gpu: bool = False,
) -> FaissIndex:
    """Build a FaissIndex from an embeddings table, row ``i`` of the index being row ``i`` of it.

    Indexes that need training are trained first on ``train_sample`` random rows (None = all),
    then the table is streamed into the index shard by shard.
    """
    index = FaissIndex(table_dim(path), factory, metric, use_gpu)
    if not index.is_trained:
        index.train(sample_table(path, train_sample, seed))
    for vectors, pids in iter_embeddings(path):
        index.add(vectors, pids)
    return index
