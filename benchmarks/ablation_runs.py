"""The run folder of one ablation row and seed: its config and `rqa run` command, and its start
as hard links of the baseline run's stages that the row leaves as they are.

Which stages those are is not assumed from the row's keys: the runner's own plan (pipelines/
runner.py plan_run, judged by the stages' fingerprints) is asked which stages of the baseline
run the row's config finds cached. Those folders are linked file by file into the row's folder,
where the same plan then skips them; a linked stage the row's run would redo is an error.
RQA never writes a finished stage's files in place (every write is a temporary file or folder
renamed over the old one), so the row's run cannot change the baseline's files through a link.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ablation_rows import ROW_EVALUATE, Row, seed_set

from pipelines.config import PipelineConfig, load_pipeline_config
from pipelines.fingerprint import basis, fingerprint
from pipelines.overrides import parse_set
from pipelines.runner import StagePlan, check_graph, plan_run, read_stage_manifest
from pipelines.stages import stage_spec
from retrieval.tables.store import MANIFEST, write_json_atomic


@dataclass(frozen=True)
class Setup:
    """What every run of one ablation shares: the config file, the folder that holds the
    runs (runs/ablation/NAME), and the `rqa run` options --model / --data-beir (None: the
    config's)."""

    config: Path
    root: Path
    model: str | None = None
    data_beir: Path | None = None

    def load(self, sets: list[str], run_dir: Path) -> PipelineConfig:
        """The config `rqa run` builds from these --set options and this --run-dir."""
        config = load_pipeline_config(self.config, self.data_beir, parse_set(sets))
        update = {"run_dir": run_dir, "model": self.model}
        return config.model_copy(update={k: v for k, v in update.items() if v is not None})

    def run_dir(self, name: str, seed: int) -> Path:
        return self.root / f"{name}-s{seed}"

    def command(self, sets: list[str], run_dir: Path) -> list[str]:
        """The `rqa run` arguments of one run (after the program name)."""
        args = ["run", str(self.config), "--run-dir", str(run_dir)]
        if self.model is not None:
            args += ["--model", self.model]
        if self.data_beir is not None:
            args += ["--data-beir", str(self.data_beir)]
        for value in sets:
            args += ["--set", value]
        return args


def shown(args: list[str]) -> str:
    return shlex.join(["rqa", *args])


def baseline_sets(seed: int) -> list[str]:
    return [seed_set(seed)]


def row_sets(setup: Setup, row: Row, seed: int) -> list[str]:
    """The row's --set options: the seed, the row's own keys, then the stages it does not
    need switched off and evaluate reduced (ablation_rows.ROW_EVALUATE)."""
    sets = [seed_set(seed), *row.sets]
    config = setup.load(sets, setup.run_dir(row.name, seed))
    return [*sets, *unneeded_stages_off(config, row.stage), *ROW_EVALUATE]


def unneeded_stages_off(config: PipelineConfig, stage: str) -> list[str]:
    """`enabled=false` for every enabled stage that ``stage`` does not read, directly or
    through another stage (evaluate stays: it reports the row)."""
    needed = {stage, "evaluate", *stages_read_by(config, stage)}
    return [f"stages.{s}.enabled=false" for s in config.enabled_stages() if s not in needed]


def stages_read_by(config: PipelineConfig, stage: str) -> list[str]:
    """The stages ``stage`` reads, directly or through another stage, in the config's order."""
    needed, todo = set(), [stage]
    while todo:
        for earlier in stage_spec(config, todo.pop()).upstream():
            if earlier not in needed:
                needed.add(earlier)
                todo.append(earlier)
    return [s for s in config.enabled_stages() if s in needed]


def plan_against(config: PipelineConfig, run_dir: Path) -> list[StagePlan]:
    """The runner's plan for ``config`` if it ran in ``run_dir``."""
    return plan_run(config.model_copy(update={"run_dir": run_dir}))


def shared_stages(plans: list[StagePlan]) -> list[str]:
    """The stages a plan against the baseline run finds cached: the row's run can start with
    the baseline's folders of these."""
    return [p.stage for p in plans if p.status == "cached"]


def write_predicted_run(config: PipelineConfig, run_dir: Path) -> None:
    """The manifests a finished run of ``config`` would leave in ``run_dir`` (fingerprints and
    their bases as the runner computes them, no outputs): what --dry-run plans a row against
    when the baseline has not run yet."""
    upstream: dict[str, dict] = {}
    for stage, spec in check_graph(config).items():
        stage_basis = basis(config, stage, spec, upstream)
        manifest = {"stage": stage, "fingerprint": fingerprint(stage_basis),
                    "run_id": "predicted", "basis": stage_basis}  # fmt: skip
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / stage / MANIFEST, manifest)
        upstream[stage] = manifest


def finished(config: PipelineConfig) -> bool:
    """Whether the run of ``config`` in its run folder has nothing left to do."""
    return not any(p.runs for p in plan_run(config))


def predicted_plan(baseline: PipelineConfig, row: PipelineConfig) -> list[StagePlan]:
    """The row's plan against its baseline: against the baseline's folder when that run has
    finished, else against the manifests it will leave (write_predicted_run)."""
    if finished(baseline):
        return plan_against(row, baseline.resolved_run_dir())
    with tempfile.TemporaryDirectory(prefix="ablation-baseline-") as tmp:
        write_predicted_run(baseline, Path(tmp))
        return plan_against(row, Path(tmp))


def link_or_copy(src: str, dst: str) -> None:
    """A hard link of ``src`` (another file system or no links: a copy)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def start_row_run(baseline_dir: Path, row_dir: Path, stages: list[str]) -> list[str]:
    """Give ``row_dir`` the baseline's folder of each stage in ``stages``, as hard links, where
    it does not hold that very output already (same run id); returns the stages linked now."""
    linked = []
    for stage in stages:
        source = read_stage_manifest(baseline_dir / stage)
        if source is None:
            raise RuntimeError(f"{baseline_dir / stage}: no finished stage to link")
        own = read_stage_manifest(row_dir / stage)
        if own is not None and own.get("run_id") == source.get("run_id"):
            continue
        shutil.rmtree(row_dir / stage, ignore_errors=True)
        row_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(baseline_dir / stage, row_dir / stage, copy_function=link_or_copy)
        linked.append(stage)
    return linked


def check_row_plan(config: PipelineConfig, shared: list[str]) -> list[StagePlan]:
    """The runner's plan in the row's own folder once it is started: every shared stage must
    be cached there (else the link bought nothing and the row would retrain it)."""
    plans = plan_run(config)
    for plan in plans:
        if plan.stage in shared and plan.runs:
            raise RuntimeError(
                f"{config.resolved_run_dir()}: linked stage {plan.stage} would run again: "
                + "; ".join(plan.reasons)
            )
    return plans
