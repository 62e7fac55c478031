"""`rqa report RUN_DIR`: rebuild a run's report.md (stage table, Recall@k plot, one loss curve
per training stage) and its models' cards from the finished run folder, without running."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="rebuild the report of a finished run")
    parser.add_argument("run_dir", type=Path, help="a run folder (runs/NAME)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.run_report import report_from_folder

    report_from_folder(args.run_dir)
    return 0
