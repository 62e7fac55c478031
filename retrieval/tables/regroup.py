"""Rows of a big table fetched for chunks of ids, reading the table once.

A stage that builds its output a chunk of queries at a time (mined negatives, deep negatives)
needs each chunk's rows of another table (the candidates, one row per query). Looking them up
chunk by chunk scans that table once per chunk: 25 scans of MS MARCO's 500k x 1000 candidates.
Instead the table is read once, each shard's rows written to the bucket file of their chunk,
and the buckets read back in chunk order: memory follows one shard and one chunk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retrieval.tables.store import iter_shards, shard_paths

LIST_ITEMS_AT_ONCE = 2_000_000  # list items (candidate pids) a chunk holds: ~150 MB as str
MOST_ROWS = 20_000  # rows a chunk holds at most, however short their lists


def rows_per_chunk(table_dir: str | os.PathLike, list_column: str, most: int) -> int:
    """How many rows' lists a chunk may hold so that about LIST_ITEMS_AT_ONCE items are in
    memory at once (``most`` at the least): 2,000 queries at depth 1,000. The depth is the
    longest list of the table's first row group, as every list of a ranked table is as long."""
    paths = shard_paths(table_dir)
    if not paths:
        return most
    first = pq.ParquetFile(paths[0]).read_row_group(0, columns=[list_column])[list_column]
    depth = pc.max(pc.list_value_length(first)).as_py() or 1
    return max(1, min(most, LIST_ITEMS_AT_ONCE // depth))


def rows_for_chunks(
    table_dir: str | os.PathLike,
    key: str,
    chunks: Sequence[Sequence[str]],
    columns: list[str],
    work: str | os.PathLike | None = None,
) -> Iterator[dict[str, tuple]]:
    """For each chunk of ids, in order, ``{id: (value of each column)}`` of the table's rows
    whose ``key`` is one of them (ids not in the table are absent). ``work``: a folder for the
    buckets (a temporary one by default), emptied as they are read."""
    owned = work is None
    folder = Path(tempfile.mkdtemp(prefix="rqa-regroup-") if owned else work)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _fill_buckets(table_dir, key, chunks, columns, folder)
        for index in range(len(chunks)):
            yield _read_bucket(folder / f"chunk-{index:05d}.parquet", key, columns)
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def _fill_buckets(table_dir, key, chunks, columns, folder: Path) -> None:
    chunk_of: dict[str, int] = {}
    for index, ids in enumerate(chunks):
        for value in ids:
            chunk_of.setdefault(value, index)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for shard in iter_shards(table_dir, columns=[key, *columns]):
            owner = np.fromiter((chunk_of.get(k, -1) for k in shard[key].to_pylist()), np.int64)
            for index in np.unique(owner[owner >= 0]).tolist():
                part = shard.filter(pa.array(owner == index))
                if index not in writers:
                    path = folder / f"chunk-{index:05d}.parquet"
                    writers[index] = pq.ParquetWriter(path, part.schema)
                writers[index].write_table(part)
    finally:
        for writer in writers.values():
            writer.close()


def _read_bucket(path: Path, key: str, columns: list[str]) -> dict[str, tuple]:
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    path.unlink()
    values = [table[c].to_pylist() for c in columns]
    return dict(zip(table[key].to_pylist(), zip(*values)))
