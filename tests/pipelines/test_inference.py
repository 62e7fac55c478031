"""The inference layer gives the same tables in the driver (actors: 0) and on Ray actors, and
each equals an independent reference: encoding through retrieval.encoding, brute-force top-k
in numpy, and every pair scored on its own."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipelines.inference.search import search_table, shard_blocks
from pipelines.inference.settings import InferenceSettings
from pipelines.inference.steps import encode_corpus_table, encode_queries_table, score_lists
from retrieval.encoding import encode_corpus, encode_queries
from retrieval.indexing.vectors import arrow_to_matrix
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.rerank import score_pairs
from retrieval.tables import (
    CANDIDATES,
    CORPUS,
    EXAMPLES,
    QUERIES,
    DataError,
    read_table,
    write_table,
)
from retrieval.tables.store import table_exists

LOCAL = InferenceSettings(actors=0, batch_size=16)
RAY = InferenceSettings(actors=2, batch_size=16)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from pipelines.ray_env import ensure_ray

    ensure_ray(num_cpus=2)  # both CPUs go to the 2 actors
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tables(tmp_path_factory, scifact_dir):
    """250 SciFact documents in shards of 100, 40 SciFact queries in shards of 15."""
    root = tmp_path_factory.mktemp("inference")
    docs = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            docs.append({"pid": str(doc["_id"]), "title": doc["title"], "text": doc["text"]})
            if len(docs) == 250:
                break
    write_table(root / "corpus", docs, CORPUS, shard_rows=100)
    queries = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            query = json.loads(line)
            queries.append({"qid": str(query["_id"]), "text": query["text"]})
            if len(queries) == 40:
                break
    write_table(root / "queries", queries, QUERIES, shard_rows=15)
    return root


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory, tiny_bert_dir):
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(tiny_bert_dir, max_len=64)
    with torch.no_grad():  # at their default init logits differ by only ~1e-5
        model.model.bert.pooler.dense.weight.normal_(0.0, 1.0)
        model.model.classifier.weight.normal_(0.0, 1.0)
    folder = tmp_path_factory.mktemp("cross") / "model"
    model.save(folder)
    return folder


def by_key(table_dir, key: str) -> dict[str, np.ndarray]:
    table = read_table(table_dir)
    return dict(zip(table[key].to_pylist(), arrow_to_matrix(table["vector"])))


@pytest.mark.parametrize("settings", [LOCAL, RAY], ids=["driver", "ray"])
def test_corpus_vectors_equal_encode_corpus(settings, ray_local, tables, tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir)
    encode_corpus(model, tables / "corpus", tmp_path / "ref", batch_size=8, show_progress=False)
    manifest = encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "out", settings)
    assert manifest["rows"] == 250 and manifest["meta"]["dim"] == model.dim
    # the precision each worker ran in, as it resolved it (in a Ray actor: there)
    assert manifest["meta"]["precision"] == "fp32"
    assert {f["worker"]["precision"] for f in manifest["files"]} == {"fp32"}
    got, want = by_key(tmp_path / "out", "pid"), by_key(tmp_path / "ref", "pid")
    assert (
        read_table(tmp_path / "out")["pid"].to_pylist()
        == read_table(tables / "corpus")["pid"].to_pylist()
    )  # the corpus order, whatever the actors' order of work
    for pid, vector in want.items():
        np.testing.assert_allclose(got[pid], vector, atol=1e-5, rtol=0)


@pytest.mark.parametrize("settings", [LOCAL, RAY], ids=["driver", "ray"])
def test_query_vectors_equal_encode_queries(settings, ray_local, tables, tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir)
    queries = read_table(tables / "queries")
    want = encode_queries(model, queries["text"].to_pylist(), batch_size=4, show_progress=False)
    encode_queries_table(tiny_bert_dir, tables / "queries", tmp_path / "q", settings)
    got = read_table(tmp_path / "q")
    assert got["qid"].to_pylist() == queries["qid"].to_pylist()
    np.testing.assert_allclose(arrow_to_matrix(got["vector"]), want, atol=1e-5, rtol=0)


# the corpus-split search on Ray is in the slow tier: the query split covers the Ray path here
SEARCHES = [(LOCAL, "queries"), (RAY, "queries"),
            pytest.param(RAY, "corpus", marks=pytest.mark.slow)]  # fmt: skip


@pytest.mark.parametrize(
    "settings,split", SEARCHES, ids=["driver", "ray-split-queries", "ray-split-corpus"]
)
def test_search_equals_brute_force_top_k(
    settings, split, ray_local, tables, tiny_bert_dir, tmp_path
):
    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "emb", LOCAL)
    encode_queries_table(tiny_bert_dir, tables / "queries", tmp_path / "q", LOCAL)
    search_table(tmp_path / "q", tmp_path / "emb", 7, settings, tmp_path / "c", split=split)
    found = read_table(tmp_path / "c")
    corpus, queries = read_table(tmp_path / "emb"), read_table(tmp_path / "q")
    scores = arrow_to_matrix(queries["vector"]) @ arrow_to_matrix(corpus["vector"]).T
    pids = np.array(corpus["pid"].to_pylist())
    assert found["qid"].to_pylist() == queries["qid"].to_pylist()
    for row, got_pids, got_scores in zip(scores, found["pids"].to_pylist(),
                                         found["scores"].to_pylist()):  # fmt: skip
        order = np.argsort(-row, kind="stable")[:7]
        np.testing.assert_allclose(got_scores, row[order], atol=1e-5, rtol=0)
        assert got_pids == pids[order].tolist()


def test_auto_splits_the_queries_when_the_index_fits_a_searcher(tables, tiny_bert_dir, tmp_path):
    from pipelines.inference.search import index_gb, split_of

    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "emb", LOCAL)
    size = index_gb(tmp_path / "emb")
    assert size == pytest.approx(250 * DualEncoder.from_pretrained(tiny_bert_dir).dim * 4 / 1e9)
    assert split_of(tmp_path / "emb", RAY, "auto", memory_gb=2 * size) == "queries"
    assert split_of(tmp_path / "emb", RAY, "auto", memory_gb=size / 2) == "corpus"
    assert split_of(tmp_path / "emb", LOCAL, "auto", memory_gb=size / 2) == "queries"  # one


def test_shard_blocks_split_the_shards_in_order(tmp_path):
    rows = [{"pid": str(i), "vector": [0.0, 1.0]} for i in range(10)]
    schema = pa.schema([("pid", pa.string()), ("vector", pa.list_(pa.float32(), 2))])
    write_table(tmp_path / "emb", rows, schema, shard_rows=3)  # shards of 3, 3, 3, 1 rows
    blocks = shard_blocks(tmp_path / "emb", 2)
    assert [len(paths) for paths, _ in blocks] == [2, 2]
    assert [offset for _, offset in blocks] == [0, 6]
    assert len(shard_blocks(tmp_path / "emb", 10)) == 4  # never more blocks than shards
    assert [offset for _, offset in shard_blocks(tmp_path / "emb", 1)] == [0]


@pytest.mark.parametrize("settings", [LOCAL, RAY], ids=["driver", "ray"])
def test_score_lists_equals_each_pair_scored(settings, ray_local, tables, cross_dir, tmp_path):
    pids = read_table(tables / "corpus")["pid"].to_pylist()
    queries = read_table(tables / "queries").to_pylist()
    rows = [
        {"qid": q["qid"], "query": q["text"], "negatives": pids[i : i + 5],
         "positives": [pids[i + 1], pids[200 + i]]}  # one positive also among the negatives
        for i, q in enumerate(queries)
    ]  # fmt: skip
    write_table(tmp_path / "lists", rows, EXAMPLES, shard_rows=16)
    score_lists(cross_dir, tmp_path / "lists", ["negatives", "positives"], tables / "corpus",
                tables / "queries", tmp_path / "scores", settings, depth=4)  # fmt: skip
    scored = read_table(tmp_path / "scores").to_pylist()
    model = CrossEncoder.from_pretrained(cross_dir)
    corpus = {r["pid"]: r for r in read_table(tables / "corpus").to_pylist()}
    for row, got in zip(rows, scored, strict=True):
        expected = list(dict.fromkeys(row["negatives"][:4] + row["positives"][:4]))
        assert got["qid"] == row["qid"] and got["pids"] == expected
        want = score_pairs(
            model, [row["query"]] * len(expected), [corpus[p]["title"] for p in expected],
            [corpus[p]["text"] for p in expected], batch_size=1, show_progress=False,
        )  # fmt: skip
        np.testing.assert_allclose(got["scores"], want, atol=1e-5, rtol=0)


def test_unknown_pid_is_one_error_and_no_table(tables, cross_dir, tmp_path):
    qid = read_table(tables / "queries")["qid"][0].as_py()
    rows = [{"qid": qid, "pids": ["no-such-passage"], "scores": [0.0]}]
    write_table(tmp_path / "lists", rows, CANDIDATES)
    with pytest.raises(DataError, match="no-such-passage"):
        score_lists(cross_dir, tmp_path / "lists", ["pids"], tables / "corpus",
                    tables / "queries", tmp_path / "scores", LOCAL)  # fmt: skip
    assert not table_exists(tmp_path / "scores")


def test_driver_workers_leave_the_process_threads_alone(tables, tiny_bert_dir, tmp_path):
    """With actors: 0 the worker runs in the driver: it must not cut the driver's torch threads
    to cpus_per_actor (1 by default), which made every later in-driver stage single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        settings = InferenceSettings(actors=0, cpus_per_actor=1, batch_size=16)
        encode_queries_table(tiny_bert_dir, tables / "queries", tmp_path / "q", settings)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_killed_encode_reuses_its_written_parts_and_equals_a_whole_run(
    tables, tiny_bert_dir, tmp_path, monkeypatch
):
    """Workers write their own parts into a folder a crash keeps: a rerun computes only the
    missing slices and the table equals an uninterrupted run's, byte for byte."""
    from pipelines.inference import steps, workers

    monkeypatch.setattr(steps, "ROWS_PER_TASK", 40)  # shards of 100, 100, 50: 8 slices
    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "whole", LOCAL)
    calls, real = [], workers.CorpusEncoder.__call__

    def dies_at_the_fourth(self, batch):
        calls.append(int(batch["index"][0]))
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real(self, batch)

    monkeypatch.setattr(workers.CorpusEncoder, "__call__", dies_at_the_fourth)
    parts = tmp_path / "work" / "parts"
    with pytest.raises(KeyboardInterrupt):
        encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "out", LOCAL, parts=parts)
    assert not table_exists(tmp_path / "out")
    calls.clear()
    monkeypatch.setattr(
        workers.CorpusEncoder, "__call__", lambda s, b: calls.append(1) or real(s, b)
    )
    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "out", LOCAL, parts=parts)
    assert len(calls) == 8 - 3  # the three finished slices were not encoded again
    assert read_table(tmp_path / "out").equals(read_table(tmp_path / "whole"))


def test_actors_hand_the_driver_only_part_entries(ray_local, tables, tiny_bert_dir, tmp_path):
    from pipelines.inference.pool import run_to_parts, table_slices
    from pipelines.inference.workers import QueryEncoder
    from retrieval.tables.parts import finished_parts, open_parts

    parts = open_parts(tmp_path / "parts", {})
    items = table_slices(tables / "queries", 15)
    args = (str(tiny_bert_dir), 16, "fp32", {})
    entries = list(run_to_parts(QueryEncoder, args, items, RAY, parts))
    assert sorted(e["index"] for e in entries) == [0, 1, 2]
    assert all(set(e) == {"index", "name", "rows", "sha256"} for e in entries)
    assert sum(e["rows"] for e in entries) == 40
    assert {i: e["sha256"] for i, e in finished_parts(parts).items()} == {
        e["index"]: e["sha256"] for e in entries
    }  # the actors wrote the data themselves


def test_the_driver_receives_kilobytes_for_a_table_of_vectors(
    ray_local, tables, tiny_bert_dir, tmp_path
):
    from pipelines.driver_traffic import received_bytes

    before = received_bytes()
    manifest = encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "emb", RAY)
    got = received_bytes() - before
    table_bytes = read_table(tmp_path / "emb").nbytes
    assert manifest["rows"] == 250 and table_bytes > 30_000
    assert 0 < got < 2_000, got  # three part entries (name, rows, sha256), not the vectors


@pytest.mark.slow
def test_a_killed_actor_is_restarted_and_the_table_equals_a_whole_run(
    ray_local, tables, tiny_bert_dir, tmp_path, monkeypatch
):
    """An encoder actor that dies by SIGKILL mid-stage (as on a lost node) is restarted by Ray
    Data and its slice is done again: the stage ends with the uninterrupted run's table."""
    import os
    import signal

    from pipelines.inference import steps, workers

    monkeypatch.setattr(steps, "ROWS_PER_TASK", 40)  # 8 slices over the 2 actors
    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "whole", LOCAL)
    marker = tmp_path / "killed-actor-pid"

    class DiesOnce(workers.CorpusEncoder):
        """The first slice any actor takes kills that actor's process."""

        def __call__(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    monkeypatch.setattr(steps, "CorpusEncoder", DiesOnce)
    encode_corpus_table(tiny_bert_dir, tables / "corpus", tmp_path / "out", RAY)
    assert int(marker.read_text()) != os.getpid()  # an actor died, not this process
    assert read_table(tmp_path / "out").equals(read_table(tmp_path / "whole"))


def test_each_table_records_the_precision_its_workers_ran_in(
    tables, tiny_bert_dir, cross_dir, tmp_path
):
    pids = read_table(tables / "corpus")["pid"].to_pylist()
    qids = read_table(tables / "queries")["qid"].to_pylist()
    lists = [{"qid": q, "pids": pids[i : i + 3], "scores": [0.0] * 3} for i, q in enumerate(qids)]
    write_table(tmp_path / "lists", lists, CANDIDATES)
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        manifests = [
            encode_corpus_table(tiny_bert_dir, tables / "corpus", out / "c", LOCAL,
                                precision=precision),
            encode_queries_table(tiny_bert_dir, tables / "queries", out / "q", LOCAL,
                                 precision=precision),
            score_lists(cross_dir, tmp_path / "lists", ["pids"], tables / "corpus",
                        tables / "queries", out / "s", LOCAL, precision=precision),
        ]  # fmt: skip
        for manifest in manifests:
            assert manifest["meta"]["precision"] == precision
            assert {f["worker"]["precision"] for f in manifest["files"]} == {precision}


def test_a_table_resumed_where_auto_resolves_otherwise_says_it_mixes_precisions(
    tables, tiny_bert_dir, tmp_path, monkeypatch, caplog
):
    """``precision: auto`` is bf16 on a CPU with AVX512-BF16 or AMX and fp32 on one without: a
    table whose parts were begun on one and finished on the other must say so, not pass off
    its bf16 parts as fp32."""
    import retrieval.precision
    from pipelines.inference import steps

    monkeypatch.setattr(steps, "ROWS_PER_TASK", 40)  # shards of 100, 100, 50: 8 slices
    monkeypatch.setattr(retrieval.precision, "bf16_is_fast", lambda device="cpu": False)
    parts = tmp_path / "parts"
    first = encode_corpus_table(
        tiny_bert_dir, tables / "corpus", tmp_path / "fp32", LOCAL, precision="auto", parts=parts
    )
    assert first["meta"]["precision"] == "fp32"
    for entry in sorted(parts.glob("part-*.json"))[:3]:
        entry.unlink()  # as if the first machine had stopped before these three
    monkeypatch.setattr(retrieval.precision, "bf16_is_fast", lambda device="cpu": True)
    with caplog.at_level("WARNING"):
        mixed = encode_corpus_table(
            tiny_bert_dir, tables / "corpus", tmp_path / "mixed", LOCAL, precision="auto",
            parts=parts,
        )  # fmt: skip
    assert mixed["meta"]["precision"] == "bf16+fp32"
    used = [f["worker"]["precision"] for f in mixed["files"]]
    assert used == ["bf16"] * 3 + ["fp32"] * 5
    assert "mixes precisions (3 parts in bf16, 5 parts in fp32)" in caplog.text
