"""Ray Train on a GPU: the one GPU training worker is SIGKILLed after its first checkpoint,
Ray Train (``max_failures: 1``) starts a new one, which resumes from that checkpoint, and the
run ends with the weights of an uninterrupted run (to 1e-3: CUDA's atomic adds make bf16
training on a GPU reproducible only to about that), far closer than training moved them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from retrieval.models import DualEncoder
from tests.gpu.test_gpu_training import REPO, gpu_config, gpu_env, train
from tests.pipelines.test_train_fault_tolerance import train_workers

RAY = {"launcher": "ray", "workers": 1, "max_steps": 12, "checkpoint_every": 4, "lr": 5e-3}


def kill_the_worker_after_first_checkpoint(driver: subprocess.Popen, out: Path) -> int:
    deadline = time.time() + 300
    while not (out / "checkpoints" / "latest").is_file():
        assert driver.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    workers = train_workers(driver)
    assert len(workers) == 1 and driver.poll() is None, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    return workers[0].pid


def test_a_killed_gpu_worker_is_replaced_and_ends_with_the_uninterrupted_weights(
    tmp_path, word_tables, gpu_tiny_bert
):
    whole = train(tmp_path, word_tables, gpu_tiny_bert, "whole", **RAY)
    config = gpu_config(tmp_path, "hit", word_tables, gpu_tiny_bert, **RAY, max_failures=1)
    driver = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "train-dual", "--config", str(config)],
        env=gpu_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = kill_the_worker_after_first_checkpoint(driver, tmp_path / "hit")
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-4000:]
    assert not psutil.pid_exists(killed)

    summary = json.loads((tmp_path / "hit" / "train_summary.json").read_text())
    assert summary["steps"] == 12 and summary["resumed_from"] >= 4, summary
    assert summary["world_size"] == 1 and summary["precision"] == "bf16"
    expected = DualEncoder.from_pretrained(whole / "model").state_dict()
    got = DualEncoder.from_pretrained(tmp_path / "hit" / "model").state_dict()
    start = DualEncoder.from_pretrained(gpu_tiny_bert).state_dict()
    moved = max(float((expected[k] - start[k].float()).abs().max()) for k in expected)
    worst = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    assert moved > 1e-2, f"training changed nothing (moved {moved:.2e})"
    assert worst <= 1e-3, f"resumed run differs by {worst:.2e}; training moved {moved:.2e}"
