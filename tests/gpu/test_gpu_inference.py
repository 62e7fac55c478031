"""The inference layer on a GPU: models on CUDA in the driver and in Ray actors that reserve a
GPU, against the CPU in fp32; and FAISS search on the GPU against the CPU index."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipelines.inference.settings import InferenceSettings
from pipelines.inference.steps import encode_corpus_table, score_lists
from retrieval.indexing.vectors import arrow_to_matrix
from retrieval.models import CrossEncoder
from retrieval.tables import CANDIDATES, read_table, write_table

CPU = InferenceSettings(actors=0, batch_size=32)
GPU_HERE = InferenceSettings(actors=0, gpus_per_actor=1, batch_size=32)
GPU_RAY = InferenceSettings(actors=1, gpus_per_actor=1, batch_size=32)


@pytest.fixture(scope="module")
def ray_gpu():
    ray = pytest.importorskip("ray")
    from pipelines.ray_env import ensure_ray

    ensure_ray(num_cpus=4)
    if ray.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("Ray sees no GPU")
    yield
    ray.shutdown()


def vectors(table_dir) -> np.ndarray:
    return arrow_to_matrix(read_table(table_dir)["vector"])


def test_corpus_on_cuda_equals_cpu(word_tables, gpu_tiny_bert, tmp_path):
    encode_corpus_table(gpu_tiny_bert, word_tables / "corpus", tmp_path / "cpu", CPU)
    encode_corpus_table(gpu_tiny_bert, word_tables / "corpus", tmp_path / "gpu", GPU_HERE)
    np.testing.assert_allclose(vectors(tmp_path / "gpu"), vectors(tmp_path / "cpu"), atol=1e-4)


def test_bf16_encoding_on_cuda_matches_fp32_within_cosine_0999(
    word_tables, gpu_tiny_bert, tmp_path
):
    encode_corpus_table(gpu_tiny_bert, word_tables / "corpus", tmp_path / "fp32", GPU_HERE)
    bf16 = encode_corpus_table(
        gpu_tiny_bert, word_tables / "corpus", tmp_path / "bf16", GPU_HERE, precision="auto"
    )
    assert bf16["meta"]["precision"] == "bf16"  # Ampere and later: bf16 is native
    a, b = vectors(tmp_path / "bf16"), vectors(tmp_path / "fp32")
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.999, cosine.min()
    assert not np.array_equal(a, b), "bf16 was not used"


def test_gpu_ray_actor_equals_cpu(ray_gpu, word_tables, gpu_tiny_bert, tmp_path):
    encode_corpus_table(gpu_tiny_bert, word_tables / "corpus", tmp_path / "cpu", CPU)
    encode_corpus_table(gpu_tiny_bert, word_tables / "corpus", tmp_path / "ray", GPU_RAY)
    assert (
        read_table(tmp_path / "ray")["pid"].to_pylist()
        == read_table(tmp_path / "cpu")["pid"].to_pylist()
    )
    np.testing.assert_allclose(vectors(tmp_path / "ray"), vectors(tmp_path / "cpu"), atol=1e-4)


@pytest.mark.parametrize("where", [GPU_HERE, GPU_RAY], ids=["driver", "ray-actor"])
def test_pair_scores_on_cuda_equal_cpu(word_tables, gpu_tiny_bert, tmp_path, where, request):
    if where.actors:
        request.getfixturevalue("ray_gpu")
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(gpu_tiny_bert, max_len=64)
    with torch.no_grad():
        model.model.classifier.weight.normal_(0.0, 1.0)
    model.save(tmp_path / "cross")
    rows = [{"qid": f"q{i}", "pids": [f"p{j}" for j in range(i, i + 8)], "scores": [0.0] * 8}
            for i in range(64)]  # fmt: skip
    write_table(tmp_path / "lists", rows, CANDIDATES)
    args = (["pids"], word_tables / "corpus", word_tables / "queries-train")
    score_lists(tmp_path / "cross", tmp_path / "lists", *args, tmp_path / "cpu", CPU)
    score_lists(tmp_path / "cross", tmp_path / "lists", *args, tmp_path / "gpu", where)
    cpu, gpu = read_table(tmp_path / "cpu"), read_table(tmp_path / "gpu")
    assert gpu["pids"].to_pylist() == cpu["pids"].to_pylist()
    flat = lambda t: np.concatenate([np.asarray(s) for s in t["scores"].to_pylist()])  # noqa: E731
    np.testing.assert_allclose(flat(gpu), flat(cpu), atol=1e-3)


def test_faiss_gpu_search_equals_cpu():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
        pytest.skip("this faiss build has no GPU support (pip install .[gpu])")
    from retrieval.indexing import FaissIndex

    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((100, 64)).astype(np.float32)
    pids = pa.array([str(i) for i in range(len(corpus))])
    cpu, gpu = FaissIndex(64), FaissIndex(64, use_gpu=True)
    for index in (cpu, gpu):
        index.add(corpus, pids)
    (cpu_scores, cpu_pids), (gpu_scores, gpu_pids) = (
        cpu.search(queries, 10),
        gpu.search(queries, 10),
    )
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-4, atol=1e-3)
    assert np.mean(np.asarray(gpu_pids) == np.asarray(cpu_pids)) > 0.99
