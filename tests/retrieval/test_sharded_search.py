"""Tests that searching shards (indexes or embeddings tables) equals one index over everything.

Compared with a single Flat FaissIndex and with a numpy brute force that breaks ties by row.
"""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pytest

from retrieval.indexing import FaissIndex, TopK, search_shards, search_tables
from retrieval.tables import embeddings_schema, write_table

SIZES = [7, 200, 93]  # k=10 and k=150 exceed some shard sizes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def brute_force(queries, vectors, k, metric="ip"):
    """Exact top-k in numpy; ties go to the lower row (stable sort)."""
    if metric == "ip":
        scores = queries @ vectors.T
    else:
        scores = -((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


def names(n):
    return [f"p{i}" for i in range(n)]


def split(vectors, pids, metric="ip"):
    bounds = np.cumsum([0, *SIZES])
    return [
        FaissIndex.build(vectors[a:b], pids[a:b], metric=metric)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((sum(SIZES), 12)).astype(np.float32)
    return vectors, rng.standard_normal((22, 12)).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("k", [1, 10, 150, 400])  # 400 > all 300 vectors: padded tails
def test_shards_equal_one_flat_index(data, metric, k):
    vectors, queries = data
    pids = names(len(vectors))
    want_scores, want_pids = FaissIndex.build(vectors, pids, metric=metric).search(queries, k)
    scores, found = search_shards(split(vectors, pids, metric), queries, k)
    assert found == want_pids
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    ref_scores, ref_ids = brute_force(queries, vectors, min(k, len(vectors)), metric)
    assert [row[: ref_ids.shape[1]] for row in found] == [[pids[i] for i in r] for r in ref_ids]
    np.testing.assert_allclose(scores[:, : ref_ids.shape[1]], ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_queries", [1, 25])
def test_ties_across_shards_go_to_the_lower_global_row(num_queries):
    # Few distinct small-integer vectors: many exactly equal scores, within and across shards.
    rng = np.random.default_rng(5)
    vectors = rng.integers(0, 3, (sum(SIZES), 4)).astype(np.float32)
    queries = rng.integers(0, 3, (num_queries, 4)).astype(np.float32)
    pids = names(len(vectors))
    for k in (5, 50):
        scores, found = search_shards(split(vectors, pids), queries, k)
        want_scores, want_ids = brute_force(queries, vectors, k)
        assert found == [[pids[i] for i in row] for row in want_ids]
        np.testing.assert_array_equal(scores, want_scores)
        assert (scores, found)[1] == FaissIndex.build(vectors, pids).search(queries, k)[1]


def test_search_tables_equals_one_flat_index(tmp_path, data):
    vectors, queries = data
    pids = names(len(vectors))
    paths = []
    bounds = np.cumsum([0, *SIZES])
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        flat = pa.array(vectors[a:b].ravel())
        table = pa.table({"pid": pids[a:b], "vector": pa.FixedSizeListArray.from_arrays(flat, 12)})
        paths.append(tmp_path / f"emb{i}")
        write_table(paths[-1], table, embeddings_schema(12), shard_rows=64)
    want_scores, want_pids = FaissIndex.build(vectors, pids).search(queries, 20)
    scores, found = search_tables(paths, queries, 20)
    assert found == want_pids
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_topk_keeps_the_best_over_pushes():
    top = TopK(1, 3)
    top.push(np.array([[0.5, 0.2]]), np.array([[4, 9]]), np.array([["d", "j"]], dtype=object))
    top.push(np.array([[0.5, 0.9, -np.inf]]), np.array([[1, 0, -1]]), np.array([["b", "a", ""]]))
    scores, pids = top.result()
    assert pids == [["a", "b", "d"]]
    np.testing.assert_array_equal(scores, np.float32([[0.9, 0.5, 0.5]]))


def test_mismatched_shards_are_rejected(data):
    vectors, queries = data
    ip = FaissIndex.build(vectors[:10], names(10))
    l2 = FaissIndex.build(vectors[:10], names(10), metric="l2")
    narrow = FaissIndex.build(vectors[:10, :6], names(10))
    for shards in ([ip, l2], [ip, narrow]):
        with pytest.raises(ValueError, match="shard 1"):
            search_shards(shards, queries, 3)
    with pytest.raises(ValueError, match="at least one shard"):
        search_shards([], queries, 3)
    with pytest.raises(ValueError, match="dimension 6"):
        search_shards([ip], queries[:, :6], 3)
