"""PassageLookup / QueryLookup give what a scan of the table finds (retrieval/tables/lookup.py),
and, once built, answer without reading the table again (the corpus is memory-mapped)."""

from __future__ import annotations

import random

from retrieval.tables import passage_lookup, read_table
from retrieval.tables.lookup import passages_of, queries_of
from retrieval.tables.passage_lookup import PassageLookup, QueryLookup


def test_lookups_equal_a_scan_and_read_nothing_per_call(scifact_tables, tmp_path, monkeypatch):
    corpus, queries = scifact_tables / "corpus", scifact_tables / "queries-train"
    passages, texts = PassageLookup(corpus, tmp_path / "cache"), QueryLookup(queries)
    pids = read_table(corpus, columns=["pid"])["pid"].to_pylist()
    qids = read_table(queries, columns=["qid"])["qid"].to_pylist()
    rng = random.Random(0)
    wanted = rng.sample(pids, 40) + ["no-such-pid"]
    asked = rng.sample(qids, 10) + ["no-such-qid"]

    def no_reads(*args, **kwargs):
        raise AssertionError("the table was read again")

    monkeypatch.setattr(passage_lookup, "read_table", no_reads)
    got, got_queries = passages(wanted), texts(asked)
    monkeypatch.undo()
    assert got == passages_of(corpus, wanted) and len(got) == 40
    assert got_queries == queries_of(queries, asked) and len(got_queries) == 10
