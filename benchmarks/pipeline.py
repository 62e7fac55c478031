"""Pipeline cost: wall time and peak memory of every stage of a pipeline config (demo.yaml).

Runs `rqa run CONFIG` as a user does (a fresh run directory, so every stage does its work) and
reads the run report the pipeline writes: per stage its wall time, share of the run, peak RSS
(the stage's process tree, sampled by the runner) and the dev nDCG@10 of the model it trained.
The zero-shot model and BM25 rows are the reference points measured in the same run. With
--report it only reads an existing run's report.json.
Usage: python benchmarks/pipeline.py [--config configs/demo.yaml] [--report runs/demo/report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, minilm_path, quiet_environment, table, write_result

quiet_environment()

METRIC_KEYS = ("ndcg@10", "recall@100", "rerank_ndcg@10", "rerank_rrf_ndcg@10")
HEADERS = ["stage", "wall s", "share", "peak RSS MiB", "nDCG@10", "R@100", "re-ranked nDCG@10",
           "re-ranked + RRF nDCG@10"]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--model", default=None, help="start model (default: packaged MiniLM)")
    parser.add_argument("--run-dir", type=Path, default=RESULTS / "pipeline-run")
    parser.add_argument("--report", type=Path, help="read this report.json instead of running")
    return parser.parse_args()


def run_pipeline(args: argparse.Namespace) -> tuple[Path, float]:
    """A fresh `rqa run`; returns its report.json and the command's wall seconds."""
    shutil.rmtree(args.run_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pipelines.cli", "run", str(args.config),
        "--model", args.model or minilm_path(), "--run-dir", str(args.run_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu"}
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
    print("running:", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, check=True)
    return args.run_dir / "report.json", time.perf_counter() - started


def rows_of(records: list[dict]) -> tuple[list[list[object]], float]:
    stages = [r for r in records if r.get("wall_s") is not None]
    total = sum(r["wall_s"] for r in stages)
    rows = []
    for r in records:
        metrics, wall = r.get("metrics") or {}, r.get("wall_s")
        rows.append(
            [
                r["stage"] + (" (baseline)" if r.get("status") == "baseline" else ""),
                "–" if wall is None else f"{wall:.0f}",
                "–" if wall is None else f"{wall / total:.0%}",
                "–" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:,.0f}",
                *(_metric(metrics, key) for key in METRIC_KEYS),
            ]
        )
    rows.append(["all stages", f"{total:.0f}", "100%", *[""] * (len(HEADERS) - 3)])
    return rows, total


def _metric(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else "–"


def main() -> None:
    args = parse_args()
    wall = None
    if args.report:
        report = args.report
    else:
        report, wall = run_pipeline(args)
    payload = json.loads(report.read_text())
    rows, total = rows_of(payload["records"])
    print(f"\n{payload['run']}: {payload.get('config', {}).get('stages', '')}\n")
    print(table(HEADERS, rows))
    if wall is not None:
        print(f"\n`rqa run` wall time {wall:.0f} s ({wall / 60:.1f} min), stages {total:.0f} s")
    write_result("pipeline", {"report": str(report), "records": payload["records"], "wall_s": wall})


if __name__ == "__main__":
    main()
