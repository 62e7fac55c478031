"""bf16 ZeRO-2 training on CUDA through `rqa train-dual`, as a user runs it on a GPU node, with
and without gradient caching (its chunks' sparse embedding gradients and replayed CUDA dropout
masks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from retrieval.models import DualEncoder

REPO = Path(__file__).resolve().parents[2]


def train(tmp_path: Path, tables: Path, model: Path, **extra) -> Path:
    config = {
        "model": str(model),
        "output_dir": str(tmp_path / "run"),
        "data": {"tables": str(tables), "split": "train"},
        "batch_size": 16,
        "hard_negatives": 1,
        "random_negatives": True,
        "epochs": 5,
        "max_steps": 40,
        "lr": 1e-3,
        "log_every": 5,
        "checkpoint_every": 20,
        "use_gpu": True,
        "deepspeed": str(REPO / "configs/deepspeed/gpu_zero2_bf16.json"),
        "model_settings": {"passage_max_len": 48, "query_max_len": 16},
        **extra,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "DS_ACCELERATOR": "cuda", "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "train-dual", "--config", str(path)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp_path / "run"


GRAD_CACHE = {"grad_cache": {"query_chunk": 4, "passage_chunk": 8, "keep_last": 1}}


@pytest.mark.parametrize("extra", [{}, GRAD_CACHE], ids=["plain", "grad-cache"])
def test_bf16_zero2_training_on_cuda_lowers_the_loss(tmp_path, word_tables, gpu_tiny_bert, extra):
    run = train(tmp_path, word_tables, gpu_tiny_bert, launcher="local", **extra)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40
    first, last = log[0]["loss"], log[-1]["loss"]
    assert last < 0.8 * first, f"loss {first:.3f} -> {last:.3f}"
    trained = DualEncoder.from_pretrained(run / "model").state_dict()
    start = DualEncoder.from_pretrained(gpu_tiny_bert).state_dict()
    assert any(not torch.equal(start[k].float(), trained[k].float()) for k in start)
    assert all(torch.isfinite(v.float()).all() for v in trained.values())
    ds = json.loads((REPO / "configs/deepspeed/gpu_zero2_bf16.json").read_text())
    assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage"] == 2
