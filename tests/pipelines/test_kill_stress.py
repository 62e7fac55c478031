"""kill -9 of `rqa run` at ten seeded random moments, one in each stage (in a training stage most
often while a checkpoint is being written), each followed at once by a rerun: the final metrics
must equal those of a run that was never interrupted. Slow (several minutes): `make test-slow` or
`pytest -m slow tests/pipelines/test_kill_stress.py`."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from pipelines.config import STAGE_ORDER
from tests.helpers_cli import finish, rqa
from tests.pipelines.test_pipeline_run import tiny_config

pytestmark = pytest.mark.slow
SEED = 15
TRAINING = ("train_dual_0", "train_cross", "train_dual_1", "train_dual_2", "train_joint")


def stress_config(tmp_path: Path, name: str, model: Path, scifact: Path) -> Path:
    """The tiny pipeline, 60 steps a training stage with a checkpoint every step, and the
    re-ranker trained on 2 Ray Train workers (the workers a killed driver leaves behind must not
    write into the rerun)."""
    path = tiny_config(tmp_path, name, model, scifact)
    raw = yaml.safe_load(path.read_text())
    for stage in TRAINING:  # long enough to be hit: 8 steps of the tiny model last 0.5 s
        raw["stages"][stage]["train"].update(epochs=20, max_steps=60, checkpoint_every=1)
    raw["stages"]["train_cross"]["train"].update(launcher="ray", workers=2)
    path.write_text(yaml.safe_dump(raw))
    return path


def running(run_dir: Path, stage: str) -> bool:
    """The stage has started (its work or hidden output folder exists) and not finished."""
    if (run_dir / stage / "_manifest.json").is_file():
        return False
    return any(run_dir.glob(f".work/{stage}-*")) or any(run_dir.glob(f".{stage}.tmp-*"))


def saves(run_dir: Path, stage: str = "*") -> set[tuple[str, int]]:
    """Checkpoints being written (or left by a killed save): (path, inode), as a save that is
    started again makes a new folder of the same name."""
    found = set()
    for path in run_dir.glob(f".work/{stage}-*/checkpoints/.step-*.tmp"):
        try:
            found.add((str(path), path.stat().st_ino))
        except FileNotFoundError:
            pass
    return found


def kill_during(config: Path, run_dir: Path, stage: str, mode: str, rng: random.Random) -> str:
    """Start `rqa run`, kill -9 it once ``stage`` runs (after a random delay, or the moment a
    checkpoint of it is being written); return what the kill hit."""
    left_before = saves(run_dir)
    proc = rqa("run", str(config))
    deadline = time.time() + 600
    while not running(run_dir, stage):
        if proc.poll() is not None or (run_dir / stage / "_manifest.json").is_file():
            break
        assert time.time() < deadline, f"{stage} did not start"
        time.sleep(0.01)
    if mode == "mid-save":
        while proc.poll() is None and running(run_dir, stage):
            if saves(run_dir, stage) - left_before:  # a save lasts milliseconds: no sleep here
                break
    else:
        time.sleep(rng.uniform(0.0, 3.0))
    if proc.poll() is not None:
        proc.wait()
        return "finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    hit = [s for s in STAGE_ORDER if running(run_dir, s)]  # started, not finished
    hit_save = [s for s in hit if saves(run_dir, s) - left_before]
    return f"aimed at {stage} ({mode}), hit " + (
        f"{hit_save[0]} mid-save" if hit_save else (hit[0] if hit else "between stages")
    )


def test_ten_kills_across_stages_end_with_the_uninterrupted_metrics(
    tmp_path, tiny_bert_dir, scifact_dir
):
    whole = stress_config(tmp_path, "whole", tiny_bert_dir, scifact_dir)
    finish(rqa("run", str(whole)))

    config = stress_config(tmp_path, "killed", tiny_bert_dir, scifact_dir)
    run_dir = tmp_path / "killed"
    rng = random.Random(SEED)
    hits = []
    for stage in STAGE_ORDER:  # one kill a stage, at a random moment of it
        if stage == "pretrain":  # off here: waiting for it would outlast the whole run
            continue
        mode = "mid-save" if stage in TRAINING and rng.random() < 0.7 else "delay"
        hits.append(kill_during(config, run_dir, stage, mode, rng))
    print("\n".join(f"kill {i}: {hit}" for i, hit in enumerate(hits, 1)))
    finish(rqa("run", str(config)))

    assert sum(hit.endswith("mid-save") for hit in hits) >= 1, hits
    assert len({hit.split(" hit ")[-1].split()[0] for hit in hits}) >= 6, hits  # across stages
    ours = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "whole" / "evaluate" / "metrics.json").read_text())
    assert ours.keys() == theirs.keys()
    for name in ours:
        for metric, value in theirs[name].items():
            assert ours[name][metric] == pytest.approx(value, abs=1e-6), (name, metric, hits)
