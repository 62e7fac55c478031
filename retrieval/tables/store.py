"""Sharded Parquet tables on disk, written atomically with a ``_manifest.json`` written last.

A table is a folder of ``part-NNNNN.parquet`` shards. It is built in a hidden temporary sibling
folder and renamed into place only when every shard and the manifest are complete, so a crash
or a bad input line never leaves a half-written table behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.errors import MissingInputError

MANIFEST = "_manifest.json"
DEFAULT_SHARD_ROWS = 100_000


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_atomically(path: Path, write: Callable[[Path], object], durable: bool = False) -> Path:
    """Let ``write`` fill a hidden sibling temporary file, then rename it onto ``path``: readers
    see the old file or the new one, never half of one. The one atomic-file helper of RQA.
    ``durable``: the file reaches the disk before the rename (it survives a power cut too)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, durable: bool = False) -> Path:
    write = lambda tmp: tmp.write_text(text, encoding="utf-8")  # noqa: E731
    return replace_atomically(path, write, durable)


def write_json_atomic(path: Path, payload: object) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def replace_dir(new: Path, dest: Path) -> None:
    """Move the finished folder ``new`` onto ``dest``. An older ``dest`` is renamed aside first
    (``.NAME.old-*``) and removed last, so ``dest`` is always a whole folder, old or new. The
    one folder swap of RQA (tables, stage outputs, checkpoints)."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``dest`` on success and vanishes on error."""
    dest = Path(dest)
    created = [p for p in dest.parents if not p.exists()]  # innermost first
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # a failed write leaves no new empty parent folders either
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    replace_dir(tmp, dest)


def _batches(rows: Iterable[Mapping], schema: pa.Schema, shard_rows: int) -> Iterator[pa.Table]:
    chunk: list[Mapping] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= shard_rows:
            yield pa.Table.from_pylist(chunk, schema=schema)
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk, schema=schema)


def write_table(
    dest: str | os.PathLike,
    rows: Iterable[Mapping] | pa.Table | Iterable[pa.Table],
    schema: pa.Schema,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    meta: Mapping | None = None,
) -> dict:
    """Write ``rows`` (dicts, a table, or an iterable of tables) as Parquet shards at ``dest``.

    Returns the manifest. An empty input still writes one empty shard so the schema is kept.
    """
    if isinstance(rows, pa.Table):
        pieces: Iterable[pa.Table] = [rows]
    else:
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            pieces = []
        elif isinstance(first, pa.Table):
            pieces = _chain_tables(first, rows)
        else:
            pieces = _batches(_chain_rows(first, rows), schema, shard_rows)
    started = time.time()
    with atomic_dir(dest) as tmp:
        files = []
        for table in _resharded(pieces, shard_rows):
            files.append(_write_shard(tmp, len(files), table.cast(schema)))
        if not files:
            files.append(_write_shard(tmp, 0, schema.empty_table()))
        manifest = table_manifest(schema, files, started, meta)
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def table_manifest(schema: pa.Schema, files: list[dict], started: float, meta: dict | None) -> dict:
    """A table's manifest: its schema, its shard files ({name, rows, sha256}) in order, their
    total rows, the seconds since ``started`` the write took, and free ``meta``."""
    return {
        "schema": schema.to_string(show_schema_metadata=False),
        "rows": sum(f["rows"] for f in files),
        "files": files,
        "seconds": round(time.time() - started, 3),
        "meta": dict(meta or {}),
    }


def _chain_rows(first, rest):
    yield first
    yield from rest


def _chain_tables(first, rest):
    yield first
    yield from rest


def _resharded(pieces: Iterable[pa.Table], shard_rows: int) -> Iterator[pa.Table]:
    for table in pieces:
        for start in range(0, max(table.num_rows, 1), shard_rows):
            part = table.slice(start, shard_rows)
            if part.num_rows:
                yield part


def _write_shard(folder: Path, index: int, table: pa.Table) -> dict:
    name = f"part-{index:05d}.parquet"
    pq.write_table(table, folder / name)
    return {"name": name, "rows": table.num_rows, "sha256": sha256_of(folder / name)}


def table_exists(path: str | os.PathLike) -> bool:
    """A table exists only once its manifest has been written."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not table_exists(path):
        raise MissingInputError(f"{path}: no table here (missing {MANIFEST})")
    return json.loads((path / MANIFEST).read_text())


def shard_paths(path: str | os.PathLike) -> list[Path]:
    """The shard files listed in a table's manifest, in order."""
    return [Path(path) / f["name"] for f in read_manifest(path)["files"]]


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read a whole table (all shards) into memory."""
    tables = [pq.read_table(p, columns=columns) for p in shard_paths(path)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def iter_shards(path: str | os.PathLike, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Read a table one shard at a time, keeping memory bounded by the shard size."""
    for p in shard_paths(path):
        yield pq.read_table(p, columns=columns)


def iter_rows(path: str | os.PathLike, columns: list[str] | None = None) -> Iterator[dict]:
    """A table's rows as dicts, in order, with one shard in memory at a time."""
    for shard in iter_shards(path, columns):
        yield from shard.to_pylist()
