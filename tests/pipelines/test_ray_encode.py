"""Corpus encoding on Ray Data actors writes the same embeddings table as encoding in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.encoding import encode_corpus
from retrieval.models import DualEncoder
from retrieval.tables import CORPUS, read_manifest, read_table, table_exists, write_table


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from pipelines.ray_env import ensure_ray

    ensure_ray(num_cpus=2)  # both CPUs go to the 2 actors
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, scifact_dir):
    """The first 250 SciFact documents in shards of 100 (so actors get several shards)."""
    rows = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            rows.append({"pid": str(doc["_id"]), "title": doc["title"], "text": doc["text"]})
            if len(rows) == 250:
                break
    out = tmp_path_factory.mktemp("ray-encode") / "corpus"
    write_table(out, rows, CORPUS, shard_rows=100)
    return out


def vectors_by_pid(table_dir) -> dict[str, np.ndarray]:
    table = read_table(table_dir)
    vectors = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
    return dict(zip(table["pid"].to_pylist(), vectors))


def test_ray_data_actors_match_in_process_encoding(ray_local, corpus, tiny_bert_dir, tmp_path):
    from pipelines.ray_encode import encode_corpus_ray

    model = DualEncoder.from_pretrained(tiny_bert_dir)
    encode_corpus(model, corpus, tmp_path / "local", batch_size=16, show_progress=False)
    manifest = encode_corpus_ray(tiny_bert_dir, corpus, tmp_path / "ray", actors=2, batch_size=16)
    assert manifest["rows"] == 250 == read_manifest(tmp_path / "local")["rows"]
    local, remote = vectors_by_pid(tmp_path / "local"), vectors_by_pid(tmp_path / "ray")
    assert set(local) == set(remote) and len(remote) == 250
    for pid, vector in local.items():
        np.testing.assert_allclose(remote[pid], vector, atol=1e-5, rtol=0)
    assert manifest["meta"]["dim"] == model.dim


def test_zero_actors_is_an_error_and_writes_nothing(ray_local, corpus, tiny_bert_dir, tmp_path):
    from pipelines.ray_encode import encode_corpus_ray

    with pytest.raises(ValueError, match="actors must be at least 1"):
        encode_corpus_ray(tiny_bert_dir, corpus, tmp_path / "out", actors=0)
    assert not table_exists(tmp_path / "out")
