"""Ray Train fault tolerance as `rqa train-dual` runs it: a training worker SIGKILLed once after
the first checkpoint is replaced by Ray Train (``max_failures: 1``) and the run ends with exactly
the weights of one that was never interrupted (slow: two Ray Train runs); with ``max_failures:
0`` the run stops with one line that says what to do. That run also keeps Ray Train's records
in a ``storage_path`` of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.helpers_cli import finish, rqa
from tests.retrieval.training.test_training_run import weights, write_config

RAY = {"launcher": "ray", "workers": 2, "max_steps": 12, "checkpoint_every": 4}


def train_workers(driver: subprocess.Popen) -> list[psutil.Process]:
    """The Ray Train worker processes of ``driver``'s local Ray (its descendants)."""
    found = []
    for child in psutil.Process(driver.pid).children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith("ray::RayTrainWorker"):
                found.append(child)
        except psutil.Error:
            pass
    return found


def kill_a_worker_after_first_checkpoint(driver: subprocess.Popen, out: Path) -> int:
    """SIGKILL one training worker once the first checkpoint is written; return its pid."""
    deadline = time.time() + 300
    while not (out / "checkpoints" / "latest").is_file():
        assert driver.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    workers = train_workers(driver)
    assert len(workers) == 2, workers
    assert driver.poll() is None, "training finished before a worker could be killed"
    os.kill(workers[-1].pid, signal.SIGKILL)
    return workers[-1].pid


def summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


@pytest.mark.slow
def test_a_lost_worker_is_replaced_and_the_run_ends_with_the_uninterrupted_weights(
    tmp_path, scifact_tables, tiny_bert_dir
):
    whole = write_config(tmp_path, "whole", scifact_tables, tiny_bert_dir, **RAY)
    finish(rqa("train-dual", "--config", str(whole)))
    assert (tmp_path / "whole" / "ray" / "train-dual").is_dir()  # Ray Train's default place

    hit = write_config(tmp_path, "hit", scifact_tables, tiny_bert_dir, **RAY, max_failures=1)
    driver = rqa("train-dual", "--config", str(hit))
    killed = kill_a_worker_after_first_checkpoint(driver, tmp_path / "hit")
    finish(driver)  # the same command, not a relaunch: Ray Train restarted the workers

    assert not psutil.pid_exists(killed)
    got = summary(tmp_path / "hit")
    assert got["steps"] == 12 and got["world_size"] == 2 and got["resumed_from"] >= 4, got
    expected = weights(tmp_path / "whole" / "model")
    actual = weights(tmp_path / "hit" / "model")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_without_restarts_a_lost_worker_stops_the_run_with_one_line(
    tmp_path, scifact_tables, tiny_bert_dir
):
    records = tmp_path / "shared-records"
    config = write_config(
        tmp_path,
        "once",
        scifact_tables,
        tiny_bert_dir,
        **RAY,
        storage_path=str(records),
        max_failures=0,
    )
    driver = rqa("train-dual", "--config", str(config))
    kill_a_worker_after_first_checkpoint(driver, tmp_path / "once")
    driver.wait(timeout=300)
    driver.err_file.seek(0)
    err = driver.err_file.read()
    assert driver.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("rqa train-dual: error:")]
    assert len(errors) == 1, err[-3000:]
    line = errors[0]
    assert line.startswith("rqa train-dual: error: training on Ray stopped: lost worker"), line
    assert "max_failures: 0" in line and "resume from the last checkpoint" in line, line
    assert not (tmp_path / "once" / "model").exists()
    assert len(list(records.glob("train-dual-once-*"))) == 1  # Ray Train's run folder
    assert not (tmp_path / "once" / "ray").exists()
