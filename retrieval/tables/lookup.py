"""Look up a few rows of a big table by id (passages by pid, queries by qid), shard by shard.

Only the rows asked for are turned into Python objects, so memory follows the request, not the
table; holds no model code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from retrieval.tables.store import iter_shards


def rows_by_id(
    table_dir: str | os.PathLike, key: str, ids: Iterable[str], columns: list[str]
) -> dict[str, tuple]:
    """``{id: (value of each of columns)}`` for the rows whose ``key`` is in ``ids``.

    Ids that are not in the table are simply absent from the result.
    """
    wanted = pa.array(sorted(set(ids)), type=pa.string())
    found: dict[str, tuple] = {}
    if len(wanted) == 0:
        return found
    for shard in iter_shards(table_dir, columns=[key, *columns]):
        shard = shard.filter(pc.is_in(shard[key], value_set=wanted))
        values = [shard[c].to_pylist() for c in columns]
        found.update(zip(shard[key].to_pylist(), zip(*values)))
    return found


def passages_of(corpus_dir: str | os.PathLike, pids: Iterable[str]) -> dict[str, tuple]:
    """``{pid: (title, text)}`` for just the ``pids`` asked for (title may be None)."""
    return rows_by_id(corpus_dir, "pid", pids, ["title", "text"])


def queries_of(queries_dir: str | os.PathLike, qids: Iterable[str]) -> dict[str, str]:
    """``{qid: text}`` for just the ``qids`` asked for."""
    return {qid: row[0] for qid, row in rows_by_id(queries_dir, "qid", qids, ["text"]).items()}
