"""The RocketQA ablation on one pipeline config: what each lever of the recipe is worth on dev.

For every seed, the config as shipped runs once (the baseline, `--set seed=S`), then each row of
benchmarks/ablation_rows.py as its own `rqa run` with the row's `--set` overrides, in
runs/ablation/NAME/ROW-sS. A row's folder starts with hard links of the baseline's stages that
the runner's plan finds unchanged by the row, so only the stages the row changes are trained
(benchmarks/ablation_runs.py). The table gives each row's dev nDCG@10 at the stage it changes,
per seed, their mean and the paired change from the baseline at that stage; it is printed and
written to benchmarks/results/ablation-NAME.json.

Usage:
  python benchmarks/ablation.py [--config configs/scifact.yaml] [--seeds 0,1] [--rows a,b]
  python benchmarks/ablation.py --dry-run     # each run's command and plan; trains nothing
  python benchmarks/ablation.py --table       # the table of the runs there are; runs nothing
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, minilm_path, quiet_environment, write_result

quiet_environment()

from ablation_rows import BASELINE, Row, chosen_rows  # noqa: E402
from ablation_runs import (  # noqa: E402
    Setup,
    baseline_sets,
    check_row_plan,
    plan_against,
    predicted_plan,
    row_sets,
    shared_stages,
    shown,
    start_row_run,
)
from ablation_table import Line, as_json, markdown, stage_metric  # noqa: E402

from pipelines.config import STAGE_ORDER, load_pipeline_config  # noqa: E402
from pipelines.runner import format_plan, plan_run  # noqa: E402

BASELINE_ABOUT = "the config as shipped"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "scifact.yaml")
    parser.add_argument("--seeds", default="0,1", help="comma-separated values of `seed`")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--model", default=None, help="start model (default: packaged MiniLM)")
    parser.add_argument("--data-beir", type=Path, default=None, help="`rqa run --data-beir`")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "ablation",
                        help="the runs go to ROOT/NAME/ROW-sSEED")  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="commands and plans; no work")
    mode.add_argument("--table", action="store_true", help="read the runs there are; no work")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for key in ("config", "root", "data_beir"):  # the runs start in the repository
        if getattr(args, key) is not None:
            setattr(args, key, getattr(args, key).resolve())
    return args


def rqa(args: list[str]) -> int:
    """Run `rqa ARGS` as a user does, in its own process; returns its exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
    print(f"running: {shown(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env).returncode


def show_plans(setup: Setup, rows: list[Row], seed: int) -> None:
    """--dry-run: the seed's commands, the baseline's plan in its folder, and each row's plan
    against the baseline (finished, or as it will be): cached stages are linked, not rerun."""
    run_dir, sets = setup.run_dir(BASELINE, seed), baseline_sets(seed)
    baseline = setup.load(sets, run_dir)
    print(f"\n## {BASELINE}, seed {seed}\n{shown(setup.command(sets, run_dir))}")
    print(format_plan(plan_run(baseline)))
    for row in rows:
        row_dir, sets = setup.run_dir(row.name, seed), row_sets(setup, row, seed)
        print(f"\n## {row.name}, seed {seed}: {row.about}\n{shown(setup.command(sets, row_dir))}")
        print(f"(cached: hard-linked from {run_dir.name} and skipped)")
        print(format_plan(predicted_plan(baseline, setup.load(sets, row_dir))))


def run_seed(setup: Setup, rows: list[Row], seed: int) -> list[str]:
    """The seed's baseline, then each row; returns the runs that failed."""
    baseline_dir, sets = setup.run_dir(BASELINE, seed), baseline_sets(seed)
    if rqa(setup.command(sets, baseline_dir)) != 0:
        return [f"{BASELINE}-s{seed} (its rows skipped)"]
    return [f"{row.name}-s{seed}" for row in rows if not run_row(setup, row, seed)]


def run_row(setup: Setup, row: Row, seed: int) -> bool:
    """One row's run, started with links of the baseline's stages it shares; whether it
    finished."""
    run_dir, sets = setup.run_dir(row.name, seed), row_sets(setup, row, seed)
    config, baseline_dir = setup.load(sets, run_dir), setup.run_dir(BASELINE, seed)
    shared = shared_stages(plan_against(config, baseline_dir))
    linked = start_row_run(baseline_dir, run_dir, shared)
    print(f"\n## {row.name}, seed {seed}: linked {', '.join(linked) or 'nothing new'}")
    print(format_plan(check_row_plan(config, shared)), flush=True)
    return rqa(setup.command(sets, run_dir)) == 0


def table_lines(setup: Setup, rows: list[Row], seeds: list[int]) -> tuple[list[Line], list[Line]]:
    """(the baseline at each stage a row reports, one line per row), read from the runs. With
    no rows (`--rows baseline`) the baseline is shown at every retriever stage it evaluated."""
    stages = [s for s in STAGE_ORDER if any(row.stage == s for row in rows)]
    if not rows:
        stages = evaluated_retrievers(setup, seeds)
    baselines = [
        Line(BASELINE, BASELINE_ABOUT, stage,
             {seed: stage_metric(setup.run_dir(BASELINE, seed), stage) for seed in seeds})
        for stage in stages
    ]  # fmt: skip
    lines = [
        Line(row.name, row.about, row.stage,
             {seed: stage_metric(setup.run_dir(row.name, seed), row.stage) for seed in seeds})
        for row in rows
    ]  # fmt: skip
    return baselines, lines


def evaluated_retrievers(setup: Setup, seeds: list[int]) -> list[str]:
    """The retriever stages (train_dual_*, train_joint) the baseline's evaluate scored in any
    seed; all of them before any has finished."""
    retrievers = [s for s in STAGE_ORDER if s.startswith(("train_dual", "train_joint"))]
    scored = [
        stage for stage in retrievers
        if any(stage_metric(setup.run_dir(BASELINE, seed), stage) is not None for seed in seeds)
    ]  # fmt: skip
    return scored or retrievers


def commands(setup: Setup, rows: list[Row], seeds: list[int]) -> dict[str, str]:
    """Each run's `rqa run` command, by its folder's name."""
    runs = {}
    for seed in seeds:
        baseline_dir = setup.run_dir(BASELINE, seed)
        runs[baseline_dir.name] = shown(setup.command(baseline_sets(seed), baseline_dir))
        for row in rows:
            row_dir = setup.run_dir(row.name, seed)
            runs[row_dir.name] = shown(setup.command(row_sets(setup, row, seed), row_dir))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)  # configs name their data relative to the repository, as `rqa run` reads it
    rows = chosen_rows(args.rows)
    name = load_pipeline_config(args.config, args.data_beir).name
    setup = Setup(args.config, args.root / name, args.model or minilm_path(), args.data_beir)
    failed = []
    for seed in args.seeds:
        if args.dry_run:
            show_plans(setup, rows, seed)
        elif not args.table:
            failed += run_seed(setup, rows, seed)
    baselines, lines = table_lines(setup, rows, args.seeds)
    print(f"\n{name}: dev nDCG@10 by row and seed\n\n{markdown(baselines, lines, args.seeds)}")
    if not args.dry_run:
        write_result(f"ablation-{name}", {
            "config": str(args.config), "root": str(setup.root), "seeds": args.seeds,
            "rows": as_json(baselines, lines), "failed": failed,
            "commands": commands(setup, rows, args.seeds),
        })  # fmt: skip
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
