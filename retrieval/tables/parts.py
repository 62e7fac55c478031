"""A table written one shard at a time by many workers, resumable after a crash.

Workers (Ray actors, searchers, scorers) each write the shards of their own slices into one
parts folder with :func:`write_part`; the driver gathers only the small manifest entries they
return and, once every part is there, :func:`assemble` links the parts into a table (written
atomically, manifest last, as store.write_table does). The parts folder lives where a crash
keeps it (a stage's work folder), so a rerun finds the parts already written
(:func:`finished_parts`) and writes only the others; :func:`open_parts` clears the folder when
what it was written for (the plan) has changed. Nothing here holds more than one part.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.tables.store import (
    MANIFEST,
    atomic_dir,
    replace_atomically,
    sha256_of,
    table_manifest,
    write_json_atomic,
)

PLAN = "plan.json"


def folder_stamp(folder: str | os.PathLike) -> list:
    """``[name, size, mtime_ns]`` of every file under ``folder`` (a model, say): cheap, and it
    changes when the folder is written again. A hub id (no such folder) is its own stamp."""
    folder = Path(folder)
    if not folder.is_dir():
        return [str(folder)]
    return sorted(
        [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in folder.rglob("*")
        if p.is_file()
    )


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _entry_path(folder: Path, index: int) -> Path:
    return folder / f"part-{index:05d}.json"


def open_parts(folder: str | os.PathLike, plan: dict) -> Path:
    """The parts folder for ``plan`` (what the parts are computed from: inputs, model,
    settings), emptied first if it holds parts of another plan."""
    folder = Path(folder)
    written = folder / PLAN
    if written.is_file() and json.loads(written.read_text()) != json.loads(json.dumps(plan)):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not written.is_file():
        write_json_atomic(written, plan)
    return folder


def write_part(
    folder: str | os.PathLike, index: int, table: pa.Table, worker: dict | None = None
) -> dict:
    """Write part ``index`` (Parquet, atomically), then its manifest entry beside it: the
    entry's file marks the part complete. Returns the entry (name, rows, sha256); ``worker``
    (where it was computed) is kept beside it, in the entry file, and reaches the manifest."""
    folder = Path(folder)
    path = replace_atomically(folder / part_name(index), lambda tmp: pq.write_table(table, tmp))
    entry = {"name": path.name, "rows": table.num_rows, "sha256": sha256_of(path)}
    write_json_atomic(
        _entry_path(folder, index), {**entry, **({"worker": worker} if worker else {})}
    )
    return entry


def finished_parts(folder: str | os.PathLike) -> dict[int, dict]:
    """``{index: entry}`` of the parts whose entry was written (so whose data is complete)."""
    folder = Path(folder)
    found = {}
    for path in folder.glob("part-*.json"):
        index = int(path.stem.split("-")[1])
        entry = json.loads(path.read_text())
        if (folder / entry["name"]).is_file():
            found[index] = entry
    return found


def assemble(
    folder: str | os.PathLike,
    dest: str | os.PathLike,
    count: int,
    schema: pa.Schema,
    meta: dict | None = None,
) -> dict:
    """The table at ``dest`` made of parts 0..count-1 of ``folder``, in that order; returns its
    manifest. Parts are hard-linked (copied across filesystems), so the parts folder stays
    whole until the caller removes it; a missing part is an error that writes nothing."""
    folder, started = Path(folder), time.time()
    entries = finished_parts(folder)
    missing = [i for i in range(count) if i not in entries]
    if missing:
        raise RuntimeError(f"{folder}: parts {missing[:5]} of {count} were not written")
    with atomic_dir(dest) as tmp:
        files = []
        for index in range(count):
            entry = entries[index]
            _link(folder / entry["name"], tmp / part_name(index))
            files.append({**entry, "name": part_name(index)})
        if not files:
            pq.write_table(schema.empty_table(), tmp / part_name(0))
            files.append({"name": part_name(0), "rows": 0, "sha256": sha256_of(tmp / part_name(0))})
        manifest = table_manifest(schema, files, started, meta)
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or no hard links (some object-store mounts)
        shutil.copyfile(source, target)
