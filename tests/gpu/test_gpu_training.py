"""bf16 ZeRO-2 training on CUDA through `rqa train-dual`, as a user runs it on a GPU node, with
and without gradient caching (its chunks' sparse embedding gradients and replayed CUDA dropout
masks). What ran is read from the run itself: the engine's precision and the training module's
class in train_summary.json, the saved weights' dtype, the model card."""

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
BF16_ZERO2 = str(REPO / "configs/deepspeed/gpu_zero2_bf16.json")


def gpu_config(tmp_path: Path, name: str, tables: Path, model: Path, **extra) -> Path:
    """A `rqa train-dual` config for the GPU: bf16 ZeRO-2, 40 steps of 16 queries."""
    config = {
        "model": str(model),
        "output_dir": str(tmp_path / name),
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
        "deepspeed": BF16_ZERO2,
        "model_settings": {"passage_max_len": 48, "query_max_len": 16},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gpu_env() -> dict:
    """The environment a training subprocess on the GPU needs: DeepSpeed's CUDA accelerator,
    and this checkout importable (Ray workers inherit it too)."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "DS_ACCELERATOR": "cuda", "PYTHONPATH": os.pathsep.join(paths)}


def train(tmp_path: Path, tables: Path, model: Path, name: str = "run", **extra) -> Path:
    path = gpu_config(tmp_path, name, tables, model, **extra)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "train-dual", "--config", str(path)],
        env=gpu_env(), cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp_path / name


GRAD_CACHE = {"grad_cache": {"query_chunk": 4, "passage_chunk": 8, "keep_last": 1}}
MODULES = {"plain": "DualTrainingModule", "grad-cache": "CachedDualTrainingModule"}


@pytest.mark.parametrize("extra", [{}, GRAD_CACHE], ids=list(MODULES))
def test_bf16_zero2_training_on_cuda_lowers_the_loss(
    tmp_path, word_tables, gpu_tiny_bert, extra, request
):
    run = train(tmp_path, word_tables, gpu_tiny_bert, launcher="local", **extra)
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["precision"] == "bf16"  # the engine's, not the JSON's word
    assert summary["training_module"] == MODULES[request.node.callspec.id]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40
    first, last = log[0]["loss"], log[-1]["loss"]
    assert last < 0.8 * first, f"loss {first:.3f} -> {last:.3f}"
    trained = DualEncoder.from_pretrained(run / "model").state_dict()
    start = DualEncoder.from_pretrained(gpu_tiny_bert).state_dict()
    assert any(not torch.equal(start[k].float(), trained[k].float()) for k in start)
    assert all(v.dtype == torch.float32 for v in trained.values()), "not the fp32 master copy"
    assert all(torch.isfinite(v).all() for v in trained.values())
    assert "trained in bf16 mixed precision" in (run / "model" / "README.md").read_text()
