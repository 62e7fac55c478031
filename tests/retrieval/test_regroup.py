"""rows_for_chunks: each chunk gets exactly the rows a lookup of its ids finds (rows_by_id, the
per-chunk scan it replaces), and the table is read once however many chunks there are."""

from __future__ import annotations

import random

from retrieval.tables import CANDIDATES, regroup, write_table
from retrieval.tables.lookup import rows_by_id
from retrieval.tables.regroup import rows_for_chunks


def test_each_chunk_gets_its_rows_from_one_read_of_the_table(tmp_path, monkeypatch):
    rng = random.Random(0)
    rows = [{"qid": f"q{i}", "pids": [f"p{rng.randrange(99)}" for _ in range(5)],
             "scores": [0.0] * 5} for i in range(300)]  # fmt: skip
    write_table(tmp_path / "candidates", rows, CANDIDATES, shard_rows=70)  # 5 shards
    ids = [f"q{i}" for i in rng.sample(range(330), 200)]  # some not in the table
    chunks = [ids[i : i + 45] for i in range(0, len(ids), 45)]  # 5 chunks, any order
    reads, real = [], regroup.iter_shards
    monkeypatch.setattr(regroup, "iter_shards", lambda *a, **k: reads.append(1) or real(*a, **k))
    got = list(rows_for_chunks(tmp_path / "candidates", "qid", chunks, ["pids"], tmp_path / "w"))
    assert len(reads) == 1
    assert len(got) == len(chunks)
    for chunk, found in zip(chunks, got):
        assert found == rows_by_id(tmp_path / "candidates", "qid", chunk, ["pids"])
    assert list((tmp_path / "w").iterdir()) == []  # the buckets are gone once read
