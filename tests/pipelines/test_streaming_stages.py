"""Stage helpers that stream a table a chunk or a shard at a time give what the whole-table
computation gives (written out here as the reference)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.stages import negatives
from pipelines.stages.titles import drawn_titles
from retrieval.tables import CANDIDATES, CORPUS, read_table, write_table
from retrieval.training.examples import load_examples


def test_drawn_titles_equal_one_draw_over_all_titles(tmp_path):
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    rows = [
        {"pid": str(i), "title": " ".join(rng.choice(words, size=rng.integers(0, 7))) or None,
         "text": "x"}
        for i in range(500)
    ]  # fmt: skip
    write_table(tmp_path / "corpus", rows, CORPUS, shard_rows=37)
    titles = [(r["pid"], r["title"]) for r in rows if r["title"] and len(r["title"].split()) >= 4]
    picked = np.random.default_rng(7).choice(len(titles), size=60, replace=False)
    assert drawn_titles(tmp_path / "corpus", 60, seed=7) == [titles[i] for i in sorted(picked)]
    assert drawn_titles(tmp_path / "corpus", 10_000, seed=7) == titles  # all, when too few


def test_examples_in_chunks_equal_the_whole_split(tmp_path, scifact_tables, monkeypatch):
    corpus = read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist()
    queries = read_table(scifact_tables / "queries-train", columns=["qid"])["qid"].to_pylist()
    rng = np.random.default_rng(0)
    ranked = [
        {"qid": q, "pids": list(rng.choice(corpus, size=12, replace=False)),
         "scores": [0.0] * 12}
        for q in queries[::-1]  # not in the examples' order
    ]  # fmt: skip
    write_table(tmp_path / "candidates", ranked, CANDIDATES, shard_rows=100)
    monkeypatch.setattr(negatives, "CHUNK_QUERIES", 23)  # 150 queries: 7 chunks
    chunks = list(
        negatives.examples_from_candidates(scifact_tables, "train", tmp_path / "candidates", 5)
    )
    by_qid = {r["qid"]: r["pids"] for r in ranked}  # the rule by hand on the whole split
    whole = load_examples(scifact_tables, "train", None).to_pylist()
    for row in whole:
        row["negatives"] = [p for p in by_qid[row["qid"]] if p not in row["positives"]][:5]
    assert len(chunks) > 5
    assert pa.concat_tables(chunks).to_pylist() == whole
    assert all(len(row["negatives"]) == 5 for row in whole)
