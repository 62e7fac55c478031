"""A pipeline on a two-node Ray cluster, as on a real one: `rqa run` joins the cluster through
``ray: {address: ...}``, trains train_dual_0 on 2 Ray Train workers and encodes with 2 Ray Data
actors in mine and evaluate, and both nodes ran some of that work.

Both nodes run on this machine (tests/helpers_ray_cluster.py), with one CPU each: 2 workers or
actors of one CPU each can only run as one a node. Which node each actor ran on is read after
the run from the cluster's own record of its actors (the GCS actor table), so the check needs
nothing of the pipeline beyond its Ray address.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers_cli import finish, rqa
from tests.helpers_ray_cluster import actor_nodes, two_node_cluster

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


ON_RAY = {"actors": 2, "cpus_per_actor": 1, "batch_size": 16}
OFF = {"enabled": False}


def two_node_config(tmp_path: Path, address: str, model: Path, scifact: Path) -> Path:
    train = {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "hard_negatives": 1,
             "launcher": "ray", "workers": 2}  # fmt: skip
    config = {
        "name": "two-nodes",
        "run_dir": str(tmp_path / "run"),
        "model": str(model),
        "model_settings": {"query_max_len": 24, "passage_max_len": 48},
        "data": {"beir": str(scifact), "max_corpus": 150},
        "ray": {"address": address},
        "stages": {
            "train_dual_0": {"bm25_negatives": 5, "train": train},
            "mine": {"depth": 10, "negatives": 4, **ON_RAY},
            "train_cross": OFF, "denoise": OFF, "train_dual_1": OFF, "augment": OFF,
            "train_dual_2": OFF,
            "evaluate": {"k": 20, "bm25": False, "zero_shot": False, **ON_RAY},
        },
    }  # fmt: skip
    path = tmp_path / "two-nodes.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_pipeline_joins_a_two_node_cluster_and_runs_on_both_nodes(
    tmp_path, tiny_bert_dir, scifact_dir, monkeypatch
):
    with two_node_cluster(tmp_path / "cluster") as (address, auth):
        for name, value in auth.items():  # what `rqa run` needs to join the cluster
            monkeypatch.setenv(name, value)
        config = two_node_config(tmp_path, address, tiny_bert_dir, scifact_dir)
        finish(rqa("run", str(config)))
        seen = actor_nodes(address, auth)

    assert len(seen["nodes"]) == 2, seen
    nodes_of = {}
    for actor in seen["actors"]:
        nodes_of.setdefault(actor["class"].split("(")[0], set()).add(actor["node"])
    assert nodes_of.get("RayTrainWorker") == set(seen["nodes"]), nodes_of  # training
    assert nodes_of.get("MapWorker") == set(seen["nodes"]), nodes_of  # Ray Data encoders
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "train_dual_0" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert 0 <= metrics["train_dual_0"]["ndcg@10"] <= 1
