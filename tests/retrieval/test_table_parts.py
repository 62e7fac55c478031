"""Tables written a part at a time by workers (retrieval/tables/parts.py): assembled in part
order they equal the table write_table makes of the same rows; a part without its entry (a
worker killed between the two writes) counts as missing; a changed plan empties the folder; a
missing part writes no table."""

from __future__ import annotations

import pyarrow as pa
import pytest

from retrieval.tables import read_manifest, read_table, write_table
from retrieval.tables.parts import assemble, finished_parts, open_parts, part_name, write_part
from retrieval.tables.store import sha256_of

SCHEMA = pa.schema([("pid", pa.string()), ("x", pa.int64())])


def piece(start: int, rows: int) -> pa.Table:
    return pa.table({"pid": [f"p{i}" for i in range(start, start + rows)],
                     "x": list(range(start, start + rows))}, schema=SCHEMA)  # fmt: skip


def test_parts_written_in_any_order_assemble_to_the_whole_table(tmp_path):
    parts = open_parts(tmp_path / "parts", {"model": "m"})
    for index in (2, 0, 1):  # workers finish in any order
        write_part(parts, index, piece(10 * index, 10 - index))
    manifest = assemble(parts, tmp_path / "out", 3, SCHEMA, meta={"dim": 4})
    whole = pa.concat_tables([piece(0, 10), piece(10, 9), piece(20, 8)])
    assert read_table(tmp_path / "out").equals(whole)
    write_table(tmp_path / "reference", whole, SCHEMA)
    assert read_table(tmp_path / "reference").equals(read_table(tmp_path / "out"))
    assert manifest["rows"] == 27 and manifest["meta"] == {"dim": 4}
    for entry in read_manifest(tmp_path / "out")["files"]:
        assert sha256_of(tmp_path / "out" / entry["name"]) == entry["sha256"]
    assert len(finished_parts(parts)) == 3  # the parts stay until their owner removes them


def test_a_part_without_its_entry_is_missing_and_is_written_again(tmp_path):
    parts = open_parts(tmp_path / "parts", {"model": "m"})
    write_part(parts, 0, piece(0, 5))
    write_part(parts, 1, piece(5, 5))
    (parts / "part-00001.json").unlink()  # killed after the data, before the entry
    assert sorted(finished_parts(parts)) == [0]
    with pytest.raises(RuntimeError, match=r"parts \[1\] of 2 were not written"):
        assemble(parts, tmp_path / "out", 2, SCHEMA)
    assert not (tmp_path / "out").exists()
    write_part(parts, 1, piece(5, 5))
    assemble(parts, tmp_path / "out", 2, SCHEMA)
    assert read_table(tmp_path / "out")["x"].to_pylist() == list(range(10))


def test_a_changed_plan_empties_the_parts_folder(tmp_path):
    parts = open_parts(tmp_path / "parts", {"model": "a", "rows": 2048})
    write_part(parts, 0, piece(0, 3))
    assert sorted(finished_parts(open_parts(parts, {"model": "a", "rows": 2048}))) == [0]
    assert finished_parts(open_parts(parts, {"model": "b", "rows": 2048})) == {}
    assert not (parts / part_name(0)).exists()


def test_no_parts_give_an_empty_table_with_the_schema(tmp_path):
    parts = open_parts(tmp_path / "parts", {})
    manifest = assemble(parts, tmp_path / "out", 0, SCHEMA)
    assert manifest["rows"] == 0 and read_table(tmp_path / "out").schema == SCHEMA
