"""The stage graph: decide which stages run, skip those whose fingerprint matches, hand each
one a temporary output folder and rename it into the run directory with a manifest, last.

A crash loses no finished stage, and a training stage resumes from its checkpoints, which live
in ``RUN/.work/STAGE-FINGERPRINT`` until the stage has finished.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

import psutil

from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.stages import needs
from pipelines.stages.context import StageContext
from retrieval import __version__
from retrieval.tables.store import MANIFEST, write_json_atomic

logger = logging.getLogger(__name__)
MODULES = {
    "prepare": "pipelines.stages.prepare",
    "mine": "pipelines.stages.mine",
    "denoise": "pipelines.stages.denoise",
    "augment": "pipelines.stages.augment",
    "evaluate": "pipelines.stages.evaluate",
}
TRAINING = "pipelines.stages.training"


def check_graph(config: PipelineConfig) -> None:
    """Every enabled stage's inputs come from enabled stages: checked before any work."""
    enabled = config.enabled_stages()
    for stage in enabled:
        for dep in needs(config, stage):
            if dep is None:
                raise ValueError(f"stage {stage} needs a dual-encoder training stage before it")
            if dep not in enabled:
                raise ValueError(f"stage {stage} needs stage {dep}, which is disabled")


def fingerprint(config: PipelineConfig, stage: str, inputs: dict[str, str]) -> str:
    """Hash of what determines a stage's output: its section, the shared settings, the inputs'
    fingerprints and RQA's version. Paths of data and models count by name, not content."""
    payload = {
        "stage": stage,
        "section": getattr(config.stages, stage).model_dump(mode="json", exclude={"enabled"}),
        "shared": config.model_dump(
            mode="json",
            include={"model", "cross_model", "model_settings", "data", "seed", "precision"},
        ),
        "inputs": inputs,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_stage_manifest(stage_dir: Path) -> dict | None:
    path = stage_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


class PeakMemory:
    """Samples the RSS of this process and all its descendants (Ray workers too)."""

    def __init__(self, every_s: float = 0.5):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def select(config: PipelineConfig, only: str | None, start: str | None) -> list[str]:
    enabled = config.enabled_stages()
    for name, value in (("--only", only), ("--from", start)):
        if value is not None and value not in enabled:
            raise ValueError(f"{name} {value}: not an enabled stage ({', '.join(enabled)})")
    if only:
        return [only]
    if start:
        return enabled[enabled.index(start) :]
    return enabled


def run_pipeline(
    config: PipelineConfig,
    only: str | None = None,
    start: str | None = None,
    force: tuple[str, ...] = (),
) -> list[dict]:
    """Run the selected stages; returns one record per enabled stage (ran / cached / skipped)."""
    check_graph(config)
    for name in force:
        if name not in STAGE_ORDER:
            raise ValueError(f"--force {name}: no such stage ({', '.join(STAGE_ORDER)})")
    run_dir = config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    chosen = select(config, only, start)
    forced = set(force) | ({start} if start else set())
    fingerprints: dict[str, str] = {}
    records = []
    for stage in config.enabled_stages():
        inputs = {dep: fingerprints[dep] for dep in needs(config, stage)}
        fingerprints[stage] = fingerprint(config, stage, inputs)
        manifest = read_stage_manifest(run_dir / stage)
        done = manifest is not None and manifest["fingerprint"] == fingerprints[stage]
        if stage not in chosen or (done and stage not in forced):
            status = "cached" if done else ("stale" if manifest else "missing")
            records.append({"stage": stage, "status": status, **(manifest or {})})
            logger.info("stage %-13s %s", stage, status)
            continue
        for dep in inputs:
            if read_stage_manifest(run_dir / dep) is None:
                raise FileNotFoundError(
                    f"stage {stage} needs {dep}, which has not run: run it first"
                )
        records.append(run_stage(config, run_dir, stage, fingerprints[stage], inputs))
    return records


def run_stage(config: PipelineConfig, run_dir: Path, stage: str, fp: str, inputs: dict) -> dict:
    work = run_dir / ".work" / f"{stage}-{fp}"
    tmp = run_dir / f".{stage}.tmp-{uuid.uuid4().hex[:8]}"
    ctx = StageContext(stage, config, run_dir, tmp, work)
    module = importlib.import_module(MODULES.get(stage, TRAINING))
    logger.info("stage %-13s running (work: %s)", stage, work)
    started = time.perf_counter()
    try:
        with PeakMemory() as memory:
            metrics = module.run(ctx)
        tmp.mkdir(exist_ok=True)
        manifest = {
            "stage": stage,
            "fingerprint": fp,
            "inputs": inputs,
            "outputs": sorted(p.name for p in tmp.iterdir()),
            "metrics": metrics,
            "wall_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(memory.peak / 2**20, 1),
            "versions": versions(),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        replace_dir(tmp, run_dir / stage)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    logger.info("stage %-13s done in %.0f s", stage, manifest["wall_s"])
    return {"status": "ran", **manifest}


def replace_dir(new: Path, dest: Path) -> None:
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def versions() -> dict[str, str]:
    import deepspeed
    import faiss
    import ray
    import torch
    import transformers

    return {
        "rqa": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "deepspeed": deepspeed.__version__,
        "ray": ray.__version__,
        "faiss": faiss.__version__,
    }
