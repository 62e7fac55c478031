"""What every `rqa prepare` reader (BEIR, MS MARCO, DPR NQ, RocketQA) does around its own
parsing: check the duplicate / unknown-id policies before reading anything, write every table
into one temporary folder that replaces the output folder only when all of them succeeded, and
keep each table's manifest with the file it came from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from retrieval.tables.readers.lines import PathLike
from retrieval.tables.readers.policies import check_choice
from retrieval.tables.store import atomic_dir, write_table


def check_policies(on_duplicate: str, on_unknown_id: str) -> None:
    """A misspelled policy is an error before any file is read."""
    check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))
    check_choice("on_unknown_id", on_unknown_id, ("error", "skip"))


class PreparedTables:
    """The tables of one prepare run, written under a temporary folder; ``manifests`` by name."""

    def __init__(self, folder: Path, shard_rows: int):
        self.folder, self.shard_rows = folder, shard_rows
        self.manifests: dict[str, dict] = {}

    def write(
        self, name: str, rows: Iterable[dict], schema: pa.Schema, source: PathLike | str,
        split: str | None = None,
    ) -> dict:  # fmt: skip
        """Table ``name`` from ``rows``; its manifest names ``source`` (and ``split``)."""
        meta = {"source": str(source), **({"split": split} if split is not None else {})}
        manifest = write_table(self.folder / name, rows, schema, self.shard_rows, meta=meta)
        self.manifests[name] = manifest
        return manifest


@contextmanager
def prepared_tables(out_dir: PathLike, shard_rows: int) -> Iterator[PreparedTables]:
    """Tables written inside the ``with`` replace ``out_dir`` together at its end; on any
    error none of them is left behind and ``out_dir`` keeps what it held."""
    with atomic_dir(out_dir) as tmp:
        yield PreparedTables(Path(tmp), shard_rows)
