"""ShardSearcher with faiss on the GPU (a `.[gpu]` install) against brute force in numpy: the
same top-10 rows and scores over an embeddings table of several shards."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.inference.search import ShardSearcher, shard_blocks
from retrieval.tables import embeddings_schema, write_table


def faiss_with_gpu():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
        pytest.skip("this faiss build has no GPU support (pip install .[gpu])")
    return faiss


def test_shard_searcher_on_faiss_gpu_equals_brute_force(tmp_path):
    faiss_with_gpu()
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((6000, 64)).astype(np.float32)
    queries = rng.standard_normal((200, 64)).astype(np.float32)
    rows = [{"pid": f"p{i}", "vector": v.tolist()} for i, v in enumerate(corpus)]
    write_table(tmp_path / "emb", rows, embeddings_schema(64), shard_rows=1500)
    (paths, offset), (later, second) = shard_blocks(tmp_path / "emb", 2)
    searchers = [ShardSearcher(p, o, use_gpu=True) for p, o in ((paths, offset), (later, second))]
    found = [s.search(queries, 10) for s in searchers]
    scores = np.concatenate([f[0] for f in found], axis=1)
    positions = np.concatenate([f[1] for f in found], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    got_rows = np.take_along_axis(positions, order, 1)
    got_scores = np.take_along_axis(scores, order, 1)

    exact = queries @ corpus.T
    want_rows = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    want_scores = np.take_along_axis(exact, want_rows, 1)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-3)
    assert np.mean(got_rows == want_rows) > 0.99
    pids = np.concatenate([np.asarray(f[2], dtype=object) for f in found], axis=1)
    assert np.take_along_axis(pids, order, 1)[0, 0] == f"p{want_rows[0, 0]}"
