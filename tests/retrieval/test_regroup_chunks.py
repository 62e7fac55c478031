"""Chunks of ranked lists are sized by the lists' length, so the lists a stage holds at once
stay near regroup.LIST_ITEMS_AT_ONCE however deep the search went (50,000 queries x 1,000
candidates held at once took the mine driver to 3.9 GB at 1M passages)."""

from collections import Counter

import pyarrow as pa

from pipelines.stages import deep_negatives, negatives
from retrieval.tables import regroup
from retrieval.tables.schemas import CANDIDATES, EXAMPLES
from retrieval.tables.store import write_table


def ranked_tables(root, queries: int, depth: int):
    examples = [{"qid": f"q{i}", "query": f"query {i}", "positives": [f"p{i}"], "negatives": []}
                for i in range(queries)]  # fmt: skip
    lists = [{"qid": f"q{i}", "pids": [f"p{(i + j) % 500}" for j in range(depth)],
              "scores": [float(-j) for j in range(depth)]} for i in range(queries)]  # fmt: skip
    write_table(root / "examples-train", examples, EXAMPLES, shard_rows=1000)
    write_table(root / "candidates", lists, CANDIDATES, shard_rows=1000)
    return root / "examples-train", root / "candidates"


def test_rows_per_chunk_holds_about_the_budget_of_list_items(tmp_path, monkeypatch):
    _, candidates = ranked_tables(tmp_path, 50, 40)
    monkeypatch.setattr(regroup, "LIST_ITEMS_AT_ONCE", 400)
    assert regroup.rows_per_chunk(candidates, "pids", most=1000) == 10  # 400 / depth 40
    assert regroup.rows_per_chunk(candidates, "pids", most=7) == 7


def spy_on_chunks(monkeypatch, module) -> list[int]:
    sizes: list[int] = []
    real = module.rows_for_chunks

    def recording(table, key, chunks, columns, work=None):
        sizes.extend(len(c) for c in chunks)
        return real(table, key, chunks, columns, work)

    monkeypatch.setattr(module, "rows_for_chunks", recording)
    return sizes


def test_mined_and_deep_negatives_hold_chunks_of_the_budget_and_equal_one_chunk(
    tmp_path, monkeypatch
):
    examples, candidates = ranked_tables(tmp_path, 50, 40)
    monkeypatch.setattr(negatives, "load_examples", lambda tables, split, _: read(examples))
    whole = [t.to_pylist() for t in negatives.examples_from_candidates(
        tmp_path, "train", candidates, 5)]  # fmt: skip
    deep_whole = deep_negatives.deep_examples(
        tmp_path, "train", examples, candidates, 3, 0, tmp_path / "deep-whole"
    )

    monkeypatch.setattr(regroup, "LIST_ITEMS_AT_ONCE", 400)
    sizes = spy_on_chunks(monkeypatch, negatives)
    counts: Counter = Counter()
    chunked = [t.to_pylist() for t in negatives.examples_from_candidates(
        tmp_path, "train", candidates, 5, counts)]  # fmt: skip
    assert sizes == [10] * 5  # 400 pids a chunk at depth 40
    assert sum(chunked, []) == sum(whole, []) and counts["examples_with_negatives"] == 50

    deep_sizes = spy_on_chunks(monkeypatch, deep_negatives)
    deep = deep_negatives.deep_examples(
        tmp_path, "train", examples, candidates, 3, 0, tmp_path / "deep-chunked"
    )
    assert deep_sizes == [10] * 5
    assert read(deep).to_pylist() == read(deep_whole).to_pylist()


def read(table_dir) -> pa.Table:
    from retrieval.tables import read_table

    return read_table(table_dir)
