"""The stage graph: derive it from the stages' declared inputs, decide which stages run, skip
those whose fingerprint matches, hand each one its resolved inputs and a temporary output
folder, and rename that into the run directory with a manifest, last.

A crash loses no finished stage, and a training stage resumes from its checkpoints, which live
in ``RUN/.work/STAGE-FINGERPRINT`` until the stage has finished.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipelines.config import PipelineConfig
from pipelines.driver_traffic import received_bytes
from pipelines.fingerprint import PENDING, basis, fingerprint, why_stale
from pipelines.model_check import check_model_available
from pipelines.process_memory import PeakMemory
from pipelines.run_lock import RunLock
from pipelines.stages import stage_module, stage_spec
from pipelines.stages.context import StageContext
from pipelines.stages.spec import External, Output, StageSpec
from retrieval import __version__
from retrieval.errors import ConfigError, MissingInputError
from retrieval.tables.store import MANIFEST, replace_dir, write_json_atomic

logger = logging.getLogger(__name__)


def check_graph(config: PipelineConfig) -> dict[str, StageSpec]:
    """Every enabled stage's declared inputs come from enabled earlier stages that declare
    them as outputs; checked before any work. Returns each enabled stage's spec."""
    enabled = config.enabled_stages()
    specs: dict[str, StageSpec] = {}
    for stage in enabled:
        spec = stage_spec(config, stage)
        for ref in spec.reads.values():
            if not isinstance(ref, Output):
                continue
            if ref.stage not in enabled:
                raise ConfigError(f"stage {stage} needs stage {ref.stage}, which is disabled")
            if ref.stage not in specs:
                raise ConfigError(f"stage {stage} reads {ref.stage}, which runs after it")
            made = specs[ref.stage].writes + specs[ref.stage].may_write
            if ref.name and ref.name not in made:
                raise ConfigError(
                    f"stage {stage} reads {ref.stage}/{ref.name}, which {ref.stage} does not write"
                )
        specs[stage] = spec
    return specs


def needs(config: PipelineConfig, stage: str) -> list[str]:
    """Earlier stages whose outputs ``stage`` reads, from its declaration."""
    return stage_spec(config, stage).upstream()


def read_stage_manifest(stage_dir: Path) -> dict | None:
    path = stage_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class StagePlan:
    """One stage's state before the run (cached / stale / missing) and whether it runs."""

    stage: str
    status: str
    runs: bool
    reasons: list[str] = field(default_factory=list)


def select(
    config: PipelineConfig, only: str | None, start: str | None, force: tuple[str, ...]
) -> tuple[list[str], set[str]]:
    """(stages that may run, stages that run even when cached). A stage rerun gives its
    outputs a new id, so every stage reading them is stale and reruns when it may."""
    enabled = config.enabled_stages()
    for flag, names in (("--only", [only]), ("--from", [start]), ("--force", list(force))):
        for value in names:
            if value is not None and value not in enabled:
                raise ConfigError(f"{flag} {value}: not an enabled stage ({', '.join(enabled)})")
    forced = set(force) | ({start} if start else set())
    if only:
        return [only], forced & {only}
    return (enabled[enabled.index(start) :] if start else enabled), forced


def judge(manifest: dict | None, stage_basis: dict, spec: StageSpec) -> tuple[str, list[str]]:
    if manifest is None:
        return "missing", ["no output yet"]
    if manifest["fingerprint"] == fingerprint(stage_basis):
        return "cached", []
    return "stale", why_stale(manifest.get("basis"), stage_basis, spec)


def plan_run(
    config: PipelineConfig,
    only: str | None = None,
    start: str | None = None,
    force: tuple[str, ...] = (),
) -> list[StagePlan]:
    """What ``run_pipeline`` would do, and why, without doing any of it (``--dry-run``)."""
    specs = check_graph(config)
    chosen, forced = select(config, only, start, force)
    run_dir = config.resolved_run_dir()
    upstream: dict[str, dict | str | None] = {}
    plans = []
    for stage, spec in specs.items():
        manifest, _, plan = assess(config, run_dir, stage, spec, upstream, (chosen, forced))
        upstream[stage] = PENDING if plan.runs else manifest
        plans.append(plan)
    return plans


def assess(
    config: PipelineConfig, run_dir: Path, stage: str, spec: StageSpec, upstream: dict,
    selection: tuple[list[str], set[str]],
) -> tuple[dict | None, dict, StagePlan]:  # fmt: skip
    """A stage's manifest on disk, what its fingerprint is made of now, and its plan."""
    chosen, forced = selection
    manifest = read_stage_manifest(run_dir / stage)
    stage_basis = basis(config, stage, spec, upstream)
    status, reasons = judge(manifest, stage_basis, spec)
    runs = stage in chosen and (status != "cached" or stage in forced)
    if runs and status == "cached":
        reasons = ["forced by --force/--from"]
    return manifest, stage_basis, StagePlan(stage, status, runs, reasons)


def format_plan(plans: list[StagePlan]) -> str:
    lines = [f"{'stage':<13} {'status':<8} {'action':<6} why"]
    for p in plans:
        action = "run" if p.runs else "skip"
        lines.append(f"{p.stage:<13} {p.status:<8} {action:<6} {'; '.join(p.reasons)}")
    return "\n".join(lines)


def check_models(config: PipelineConfig, plans: list[StagePlan]) -> None:
    """Models named by hub id that a stage about to run reads must be loadable: checked before
    the first stage, not discovered inside a Ray worker hours later."""
    for plan in plans:
        if not plan.runs:
            continue
        for name, ref in stage_spec(config, plan.stage).reads.items():
            if isinstance(ref, External) and ("model" in name or name == "zero-shot"):
                check_model_available(str(ref.location), name)


def driver_cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def run_pipeline(
    config: PipelineConfig,
    only: str | None = None,
    start: str | None = None,
    force: tuple[str, ...] = (),
) -> list[dict]:
    """Run the selected stages; returns one record per enabled stage (ran / cached / stale /
    missing)."""
    specs = check_graph(config)
    check_models(config, plan_run(config, only, start, force))
    chosen, forced = select(config, only, start, force)
    run_dir = config.resolved_run_dir()
    with RunLock(run_dir):  # one run writes a run directory at a time
        return _run_stages(config, run_dir, specs, (chosen, forced))


def _run_stages(
    config: PipelineConfig, run_dir: Path, specs: dict, selection: tuple[list[str], set[str]]
) -> list[dict]:
    upstream: dict[str, dict | None] = {}
    records = []
    for index, (stage, spec) in enumerate(specs.items(), 1):
        manifest, stage_basis, plan = assess(config, run_dir, stage, spec, upstream, selection)
        reasons = "; ".join(plan.reasons)
        if not plan.runs:
            logger.info("stage %d/%d %-13s %s %s", index, len(specs), stage, plan.status, reasons)
            records.append({"stage": stage, **(manifest or {}), "status": plan.status})
            upstream[stage] = manifest
            continue
        for ref in spec.reads.values():
            if isinstance(ref, Output) and upstream.get(ref.stage) is None:
                raise MissingInputError(
                    f"stage {stage} needs {ref.stage}, which has not run: run it first"
                )
        logger.info("stage %d/%d %-13s running: %s", index, len(specs), stage, reasons)
        records.append(run_stage(config, run_dir, stage, spec, stage_basis))
        upstream[stage] = read_stage_manifest(run_dir / stage)
    return records


def resolve_inputs(run_dir: Path, spec: StageSpec) -> dict[str, Path | str]:
    """The paths a stage is handed: outputs of earlier stages, or outside files and folders
    (a model named by hub id stays a name)."""
    resolved: dict[str, Path | str] = {}
    for name, ref in spec.reads.items():
        if isinstance(ref, Output):
            resolved[name] = run_dir / ref.stage / ref.name if ref.name else run_dir / ref.stage
        else:
            path = Path(ref.location)
            resolved[name] = path.resolve() if path.exists() else str(ref.location)
    return resolved


def run_stage(
    config: PipelineConfig, run_dir: Path, stage: str, spec: StageSpec, stage_basis: dict
) -> dict:
    fp = fingerprint(stage_basis)
    work = run_dir / ".work" / f"{stage}-{fp}"
    tmp = run_dir / f".{stage}.tmp-{uuid.uuid4().hex[:8]}"
    ctx = StageContext(stage, config, tmp, work, resolve_inputs(run_dir, spec))
    module = stage_module(stage)
    logger.info("stage %-13s running (work: %s)%s", stage, work, resume_note(work))
    started, cpu, traffic = time.perf_counter(), driver_cpu_s(), received_bytes()
    try:
        with PeakMemory() as memory:
            metrics = module.run(ctx)
        tmp.mkdir(exist_ok=True)
        missing = [name for name in spec.writes if not (tmp / name).exists()]
        if missing:
            raise RuntimeError(f"stage {stage} did not write its declared outputs {missing}")
        manifest = {
            "stage": stage,
            "fingerprint": fp,
            "run_id": uuid.uuid4().hex[:12],
            "basis": stage_basis,
            "outputs": sorted(p.name for p in tmp.iterdir()),
            "metrics": metrics,
            "wall_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(memory.peak / 2**20, 1),
            "driver_peak_mb": round(memory.driver_peak / 2**20, 1),
            "driver_cpu_s": round(driver_cpu_s() - cpu, 2),
            "driver_received_mb": round((received_bytes() - traffic) / 2**20, 3),
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


def resume_note(work: Path) -> str:
    """What a restarted stage picks up from an earlier, killed attempt (for the log)."""
    latest = work / "checkpoints" / "latest"
    if latest.is_file():
        step = "".join(c for c in latest.read_text() if c.isdigit())
        return f"; resumes from step {step} (checkpoint of a killed run)"
    return "; resumes an earlier attempt's work" if work.is_dir() else ""


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
