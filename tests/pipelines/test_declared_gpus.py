"""configs/msmarco.yaml's recipe on a cluster of two nodes that declare 4 GPUs each (Ray
schedules declared GPUs a machine lacks; training falls back to gloo and the actors to the CPU
where CUDA sees none), on tiny synthetic MS MARCO-shaped data: every training stage runs 8
workers (``workers: auto``) that share the config's global batch, every inference stage 8
GPU-reserving actors (``actors: auto``), 4 on each node, and the results equal a run on one
node that declares 8 GPUs. Slow: two runs of the whole recipe with 8 workers a stage."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.helpers_cli import finish, rqa
from tests.helpers_ray_cluster import REPO, actor_nodes, two_node_cluster

TRAINING = ("train_dual_0", "train_cross", "train_dual_1", "train_dual_2", "train_joint")
GLOBAL_BATCH = {"train_dual_0": 16, "train_cross": 8, "train_dual_1": 16, "train_dual_2": 16,
                "train_joint": 8}  # fmt: skip


def msmarco_shaped(folder: Path, passages: int = 8 * 2048, train: int = 64, dev: int = 16) -> Path:
    """A BEIR folder of random-word passages (8 encoding tasks of 2,048: one per actor); each
    query is words of its one positive."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choices(words, k=rng.randint(20, 30))) for _ in range(passages)]
    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"_id": f"p{i}", "title": "", "text": text}) + "\n")
    (folder / "qrels").mkdir()
    with open(folder / "queries.jsonl", "w") as f:
        for split, first, count in (("train", 0, train), ("dev", train, dev)):
            lines = ["query-id\tcorpus-id\tscore"]
            for q in range(first, first + count):
                query = " ".join(rng.sample(texts[q].split(), 5))
                f.write(json.dumps({"_id": f"q{q}", "text": query}) + "\n")
                lines.append(f"q{q}\tp{q}\t1")
            (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    (folder / "unlabeled.txt").write_text(
        "\n".join(" ".join(rng.sample(t.split(), 5)) for t in texts[-20:]) + "\n"
    )
    return folder


def config_for(tmp_path: Path, name: str, address: str, data: Path, model: Path) -> Path:
    """configs/msmarco.yaml with the tiny model and data, a few steps a stage, sizes that fit."""
    config = yaml.safe_load((REPO / "configs" / "msmarco.yaml").read_text())
    ray = {"address": address, "max_failures": 2}
    config.update(name=name, run_dir=str(tmp_path / name), model=str(model),
                  data={"beir": str(data)}, ray=ray)  # fmt: skip
    config["model_settings"].update(query_max_len=16, passage_max_len=32)
    stages = config["stages"]
    for stage in TRAINING:
        train = stages[stage]["train"]
        train.update(max_steps=2, checkpoint_every=1000, global_batch_size=GLOBAL_BATCH[stage],
                     deepspeed=str(REPO / "configs/deepspeed/gpu_zero2_bf16.json"))  # fmt: skip
        train.pop("epochs", None)
    stages["train_dual_0"]["bm25_negatives"] = 5
    stages["train_cross"]["train"].update(cross_max_len=48)
    stages["train_joint"]["train"].update(group_size=4, cross_max_len=48)
    stages["mine"].update(depth=50, negatives=8)
    stages["denoise"].update(undenoised=2, mode="relative", margin=0.0)
    stages["augment"].update(queries_file=str(data / "unlabeled.txt"), depth=10,
                             mode="relative", margin=0.0)  # fmt: skip
    stages["evaluate"].update(k=50, rerank_depth=10)
    for stage in ("mine", "denoise", "augment", "evaluate"):
        stages[stage].update(cpus_per_actor=0.5, batch_size=32)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_on(tmp_path, name, data, model, monkeypatch, nodes: int) -> dict:
    gpus, cpus = (4, 5) if nodes == 2 else (8, 10)
    logs = tmp_path / f"{name}-cluster"
    with two_node_cluster(logs, num_gpus=gpus, num_cpus=cpus, nodes=nodes) as (address, auth):
        for key, value in auth.items():
            monkeypatch.setenv(key, value)
        finish(rqa("run", str(config_for(tmp_path, name, address, data, model))), 3000)
        return actor_nodes(address, auth)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(3600)
def test_declared_gpus_two_nodes_run_the_msmarco_recipe_like_one_node(
    tmp_path, tiny_bert_dir, monkeypatch
):
    data = msmarco_shaped(tmp_path / "data")
    seen = run_on(tmp_path, "two", data, tiny_bert_dir, monkeypatch, nodes=2)
    assert len(seen["nodes"]) == 2
    for stage in TRAINING:
        metrics = json.loads((tmp_path / "two" / stage / "_manifest.json").read_text())["metrics"]
        assert metrics["world_size"] == 8, stage
        assert metrics["batch_size"] * 8 == GLOBAL_BATCH[stage], stage
        where = Counter(p["node"] for p in metrics["placement"])
        assert sorted(where.values()) == [4, 4], (stage, where)  # 4 declared GPUs a node
        assert all(len(p["gpus"]) == 1 for p in metrics["placement"]), stage
    # each inference pool: 8 actors of one declared GPU each, so 4 on each node
    writers = Counter(a["node"] for a in seen["actors"] if "PartWriter" in a["class"])
    assert set(writers) == set(seen["nodes"]) and min(writers.values()) >= 4, writers
    parts = json.loads((tmp_path / "two" / "mine" / "embeddings" / "_manifest.json").read_text())
    workers = [f["worker"] for f in parts["files"]]
    assert len(workers) == 8 and all(len(w["gpus"]) == 1 for w in workers)  # a GPU each

    run_on(tmp_path, "one", data, tiny_bert_dir, monkeypatch, nodes=1)
    two = json.loads((tmp_path / "two" / "evaluate" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "evaluate" / "metrics.json").read_text())
    assert two == one
    for folder in [f"{stage}/model" for stage in TRAINING] + ["train_joint/cross_model"]:
        a = load_file(tmp_path / "two" / folder / "model.safetensors")
        b = load_file(tmp_path / "one" / folder / "model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{folder} {key}")
