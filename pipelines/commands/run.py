"""`rqa run CONFIG`: the whole RocketQA / RocketQAv2 pipeline, or one stage of it, resumable.

Also `rqa config show CONFIG`, which prints the validated config with every default filled in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pipelines.config import STAGE_ORDER, load_pipeline_config
from pipelines.overrides import add_set_arg, parse_set


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline (cached stages are skipped)")
    parser.add_argument("config", type=Path, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--run-dir", type=Path, help="override run_dir")
    parser.add_argument("--model", help="override model (e.g. a local copy of the HF model)")
    parser.add_argument("--data-beir", type=Path, help="override data: this BEIR folder")
    parser.add_argument("--only", choices=STAGE_ORDER, help="run just this stage")
    parser.add_argument(
        "--from",
        dest="start",
        choices=STAGE_ORDER,
        help="rerun this stage and every later stage that reads its outputs (directly or "
        "through another stage); stages before it are not run",
    )
    parser.add_argument(
        "--force",
        action="append",
        default=[],
        choices=STAGE_ORDER,
        help="rerun this stage even if it is up to date, and every stage that reads its "
        "outputs (repeatable)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage as cached/stale/missing, whether it would run and why; do no work",
    )
    add_set_arg(parser, "stages.mine.depth=100 --set stages.train_dual_0.train.use_gpu=true")
    parser.set_defaults(run=run)
    show = subparsers.add_parser("config", help="config tools")
    show.add_argument("action", choices=("show",))
    show.add_argument("config", type=Path)
    add_set_arg(show, "stages.mine.depth=100")
    show.set_defaults(run=run_show)


def run(args: argparse.Namespace) -> int:
    from pipelines.run_report import run_and_report

    config = load_pipeline_config(args.config, args.data_beir, parse_set(args.set))
    overrides = {"run_dir": args.run_dir, "model": args.model}
    config = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if args.dry_run:
        from pipelines.runner import format_plan, plan_run

        print(format_plan(plan_run(config, args.only, args.start, tuple(args.force))))
        return 0
    run_and_report(config, only=args.only, start=args.start, force=tuple(args.force))
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_pipeline_config(args.config, changes=parse_set(args.set))
    resolved = json.loads(config.model_dump_json())
    resolved["enabled_stages"] = config.enabled_stages()
    print(yaml.safe_dump(resolved, sort_keys=False), end="")
    return 0
