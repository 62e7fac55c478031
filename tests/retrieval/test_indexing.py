"""Tests of FaissIndex and index_from_table against a numpy brute-force search.

The numpy reference lives here on purpose: the library must not grade itself.
"""

from __future__ import annotations

import json

import faiss
import numpy as np
import pyarrow as pa
import pytest

from retrieval.indexing import (
    FaissIndex,
    index_from_table,
    read_embeddings,
    sample_table,
)
from retrieval.tables import embeddings_schema, write_table


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One OpenMP thread: on a busy 2-core machine, spinning faiss threads slow PQ training 10x."""
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


def as_pids(ids):
    return [[f"p{i}" for i in row] for row in ids]


def clustered(rng, sizes, dim=32, centers=20, noise=0.3):
    """Matrices of the given sizes drawn around the same random cluster centres."""
    middle = rng.standard_normal((centers, dim))
    return [
        (middle[rng.integers(0, centers, n)] + noise * rng.standard_normal((n, dim))).astype(
            np.float32
        )
        for n in sizes
    ]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    return vectors, queries


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("num_queries", [1, 25])  # faiss uses a different code path under 20
def test_flat_equals_brute_force(data, metric, num_queries):
    vectors, queries = data
    queries = queries[:num_queries]
    index = FaissIndex.build(vectors, names(len(vectors)), metric=metric)
    scores, pids = index.search(queries, 10)
    want_scores, want_ids = brute_force(queries, vectors, 10, metric)
    assert pids == as_pids(want_ids)
    assert scores.shape == (num_queries, 10) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_k_larger_than_index_pads_with_empty_pids(data):
    vectors, queries = data
    index = FaissIndex.build(vectors[:4], names(4))
    scores, pids = index.search(queries[:3], 6)
    want_scores, want_ids = brute_force(queries[:3], vectors[:4], 4)
    assert pids == [row + ["", ""] for row in as_pids(want_ids)]
    np.testing.assert_allclose(scores[:, :4], want_scores, rtol=1e-5)
    assert np.all(scores[:, 4:] == -np.inf)


@pytest.mark.parametrize("num_queries", [1, 30])
def test_equal_scores_go_to_the_lower_row_even_at_the_cut(num_queries):
    # Integer vectors make the tied scores exactly equal; 12 rows tie for 5 places.
    vectors = np.zeros((20, 4), np.float32)
    vectors[3:15] = 1.0
    queries = np.ones((num_queries, 4), np.float32)
    index = FaissIndex.build(vectors, names(20))
    scores, ids = index.search_ids(queries, 5)
    assert ids.tolist() == [[3, 4, 5, 6, 7]] * num_queries
    assert np.all(scores == 4.0)


@pytest.mark.parametrize(
    "factory, params, threshold",
    [
        # recall@10 measured over data seeds 0-9: 0.99-1.0 (HNSW), 0.77-0.81 (IVF-PQ)
        ("HNSW32", {"efSearch": 32}, 0.9),
        ("IVF32,PQ16x8np", {"nprobe": 8}, 0.65),
    ],
)
def test_approximate_indexes_reach_recall(factory, params, threshold):
    vectors, queries = clustered(np.random.default_rng(0), [3000, 100])
    index = FaissIndex.build(vectors, names(len(vectors)), factory)
    index.set_search_params(**params)
    _, ids = index.search_ids(queries, 10)
    _, want = brute_force(queries, vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)])
    assert recall >= threshold, f"{factory} recall@10 {recall:.3f}"


def test_training_uses_the_requested_sample(data):
    vectors, _ = data
    index = FaissIndex.build(vectors, names(len(vectors)), "IVF8,Flat", train_sample=100)
    assert index.is_trained and len(index) == len(vectors)


@pytest.mark.parametrize(
    "factory, params", [("Flat", {}), ("IVF16,Flat", {"nprobe": 4}), ("HNSW16", {"efSearch": 20})]
)
def test_save_load_round_trip(tmp_path, data, factory, params):
    vectors, queries = data
    index = FaissIndex.build(vectors, names(len(vectors)), factory, metric="l2")
    index.set_search_params(**params)
    index.save(tmp_path / "index")
    loaded = FaissIndex.load(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "meta.json").read_text())
    assert (meta["factory"], meta["metric"], meta["dim"], meta["count"]) == (factory, "l2", 16, 500)
    assert loaded.search_params == params and loaded.pids == index.pids
    want_scores, want_pids = index.search(queries, 12)
    scores, pids = loaded.search(queries, 12)
    assert pids == want_pids
    np.testing.assert_array_equal(scores, want_scores)


def test_add_grows_the_index_in_order(data):
    vectors, queries = data
    index = FaissIndex(16)
    index.add(vectors[:200], names(200))
    index.add(vectors[200:], names(500)[200:])
    _, pids = index.search(queries, 5)
    assert pids == as_pids(brute_force(queries, vectors, 5)[1])


def _one_line_error(call, *words):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_bad_input_raises_one_line_value_errors(data):
    vectors, queries = data
    index = FaissIndex.build(vectors, names(len(vectors)))
    _one_line_error(lambda: index.search(queries[:, :8], 3), "queries", "dimension 8", "16")
    _one_line_error(lambda: index.add(vectors[:, :8], names(500)), "vectors", "dimension 8")
    _one_line_error(lambda: FaissIndex.build(vectors, names(499)), "499 pids", "500 vectors")
    _one_line_error(lambda: index.add(vectors[:3], names(2)), "2 pids", "3 vectors")
    _one_line_error(lambda: index.add(vectors[:2], [1, 2]), "pids must be strings")
    _one_line_error(lambda: index.search(queries[0], 3), "queries", "2-d")
    _one_line_error(lambda: index.search(queries, 0), "k must be")
    _one_line_error(lambda: FaissIndex(16, metric="cosine"), "metric", "cosine")
    _one_line_error(lambda: FaissIndex(16, "NotAnIndex"), "NotAnIndex")
    _one_line_error(lambda: index.set_search_params(nprobe=4), "nprobe")
    _one_line_error(lambda: FaissIndex(16, "IVF8,Flat").add(vectors, names(500)), "trained")


@pytest.fixture(scope="module")
def table_data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((230, 8)).astype(np.float32), rng.standard_normal((6, 8))


def write_embeddings(path, vectors, dtype, shard_rows=100):
    values = pa.array(vectors.astype(dtype).ravel())
    table = pa.table(
        {
            "pid": names(len(vectors)),
            "vector": pa.FixedSizeListArray.from_arrays(values, vectors.shape[1]),
        }
    )
    write_table(path, table, embeddings_schema(vectors.shape[1], dtype), shard_rows=shard_rows)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_index_from_table_equals_brute_force(tmp_path, table_data, dtype):
    vectors, queries = table_data
    write_embeddings(tmp_path / "emb", vectors, dtype)  # 3 shards
    stored = vectors.astype(dtype).astype(np.float32)
    read, pids = read_embeddings(tmp_path / "emb")
    assert read.dtype == np.float32 and pids == names(230)
    np.testing.assert_array_equal(read, stored)
    index = index_from_table(tmp_path / "emb")
    scores, found = index.search(queries, 7)
    want_scores, want_ids = brute_force(queries.astype(np.float32), stored, 7)
    assert found == as_pids(want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_index_from_table_trains_on_a_sample_of_real_rows(tmp_path, table_data):
    vectors, queries = table_data
    write_embeddings(tmp_path / "emb", vectors, "float32")
    sample = sample_table(tmp_path / "emb", 50, seed=1)
    assert sample.shape == (50, 8)
    assert {row.tobytes() for row in sample} <= {row.tobytes() for row in vectors}
    index = index_from_table(tmp_path / "emb", "IVF4,Flat", train_sample=50)
    index.set_search_params(nprobe=4)  # every list: exact again
    _, pids = index.search(queries, 5)
    assert pids == as_pids(brute_force(queries.astype(np.float32), vectors, 5)[1])


def test_table_with_wrong_vector_type_is_rejected(tmp_path):
    table = pa.table({"pid": ["a"], "vector": pa.array([[1.0, 2.0]], pa.list_(pa.float64()))})
    schema = pa.schema([("pid", pa.string()), ("vector", pa.list_(pa.float64()))])
    write_table(tmp_path / "emb", table, schema)
    _one_line_error(lambda: index_from_table(tmp_path / "emb"), "vector", "fixed_size_list")
