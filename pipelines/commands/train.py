"""`rqa train-dual` and `rqa train-cross`: train from a YAML config on Ray or locally."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.launch_settings import load_train_job
from pipelines.train_launcher import launch


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    for kind in ("dual", "cross", "joint"):
        parser = subparsers.add_parser(f"train-{kind}", help=f"train a {kind} encoder")
        parser.add_argument("--config", type=Path, required=True, help="training YAML")
        parser.add_argument("--model", help="override model (HF id or local folder)")
        parser.add_argument("--output-dir", type=Path, help="override output_dir")
        parser.add_argument("--workers", type=int, help="override workers")
        parser.add_argument("--launcher", choices=("ray", "local"), help="override launcher")
        parser.add_argument("--max-steps", type=int, help="override max_steps")
        parser.set_defaults(run=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    names = ("model", "output_dir", "workers", "launcher", "max_steps")
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    config, how = load_train_job(args.config, kind=args.kind, **overrides)
    model_dir = launch(config, how)
    print(f"model written to {model_dir}")
    return 0
