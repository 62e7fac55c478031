"""What reusing corpus embeddings saves: the evaluate stage of a finished run, timed twice on
the same day and the same inputs, once as the pipeline runs it (mine's and augment's corpus
vectors read back) and once re-encoding the corpus for every retriever (the behaviour before
embeddings were kept, reproduced by making the embeddings lookup find nothing).

Each contender runs in a copy of the run directory (large files hard-linked, small ones copied,
the evaluate stage removed), as `rqa run CONFIG --only evaluate` in its own process, so the
finished run is left untouched. The table gives the stage's wall time, its corpus encodings, the
ratio to the re-encoding contender and the metrics, which must agree.
Usage: python benchmarks/evaluate_reuse.py --config configs/scifact.yaml --run-dir runs/scifact
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import REPO, RESULTS, machine, minilm_path, quiet_environment, table, write_result

quiet_environment()

CONTENDERS = ("re-encode", "reuse")
LINK_ABOVE = 1 << 20  # bytes: files this large are hard-linked, smaller ones copied
SKIP = ("evaluate", ".work", ".rqa.lock", ".rqa-workers.lock", "report.json", "report.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "scifact.yaml")
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run of --config")
    parser.add_argument("--model", default=None, help="the run's start model (default: MiniLM)")
    parser.add_argument("--work", type=Path, default=RESULTS / "evaluate-reuse")
    parser.add_argument("--rerun", nargs="+", choices=CONTENDERS, default=list(CONTENDERS),
                        help="contenders to run; one left out is read from --run-dir's own "
                        "evaluate (the run as made: reuse)")  # fmt: skip
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    return parser.parse_args()


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link big files (tables, weights: read only by evaluate), copy the rest, so nothing
    the copy's run writes in place can reach the finished run."""
    if os.path.getsize(src) > LINK_ABOVE:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_run(run_dir: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(
        run_dir, dest, copy_function=link_or_copy, ignore=lambda _, names: set(SKIP) & set(names)
    )


def child(args: argparse.Namespace) -> None:
    """Runs in the copy: evaluate alone, with the embeddings lookup disabled for re-encode."""
    from pipelines import cli
    from pipelines.stages import evaluate

    if args.child == "re-encode":
        evaluate.embeddings_source = lambda *_: None
    argv = ["run", str(args.config), "--run-dir", str(args.run_dir), "--only", "evaluate"]
    sys.exit(cli.main(argv + ["--model", args.model or minilm_path()]))


def measure(args: argparse.Namespace, contender: str) -> dict:
    copy = args.work / contender
    copy_run(args.run_dir, copy)
    cmd = [sys.executable, __file__, "--child", contender, "--config", str(args.config),
           "--run-dir", str(copy), "--model", args.model or minilm_path()]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu"}
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    print(f"[{contender}] evaluate in {copy}", flush=True)
    subprocess.run(cmd, env=env, cwd=REPO, check=True)
    return read_evaluate(copy)


def read_evaluate(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "evaluate" / "_manifest.json").read_text())
    reads = manifest["basis"]["inputs"]
    return {"wall_s": manifest["wall_s"], "peak_rss_mb": manifest["peak_rss_mb"],
            "reused": sorted(k for k in reads if k.endswith(":embeddings")),
            "metrics": manifest["metrics"]}  # fmt: skip


def encodings(metrics: dict, reused: list[str]) -> int:
    """Corpus encodings the stage did: one per dense retriever whose vectors were not read."""
    return sum(1 for name in metrics if name != "bm25") - len(reused)


def max_metric_gap(a: dict, b: dict) -> float:
    return max(
        abs(a[name][key] - b[name][key]) for name in a for key in a[name] if key in b.get(name, {})
    )


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
    args.run_dir, args.work = args.run_dir.resolve(), args.work.resolve()
    if "re-encode" not in args.rerun:
        raise SystemExit("--rerun must include re-encode: the run itself reused the embeddings")
    results = {c: measure(args, c) if c in args.rerun else read_evaluate(args.run_dir)
               for c in CONTENDERS}  # fmt: skip
    base = results["re-encode"]["wall_s"]
    rows = []
    for name, r in results.items():
        final = [m for m in r["metrics"].values() if "rerank_ndcg@10" in m]
        rows.append([name, encodings(r["metrics"], r["reused"]), f"{r['wall_s']:.0f}",
                     f"{r['wall_s'] / base:.2f}", f"{r['peak_rss_mb']:,.0f}",
                     f"{final[0]['ndcg@10']:.4f}" if final else "–"])  # fmt: skip
    print()
    print(table(["evaluate", "corpus encodings", "wall s", "vs re-encode", "peak RSS MiB",
                 "final nDCG@10"], rows))  # fmt: skip
    gap = max_metric_gap(results["re-encode"]["metrics"], results["reuse"]["metrics"])
    saved = base - results["reuse"]["wall_s"]
    share = f"{saved / base:.0%}"
    print(f"\nreuse saves {saved:.0f} s of evaluate ({share}); largest metric gap {gap:.1e}")
    payload = {"run_dir": str(args.run_dir), "config": str(args.config), "machine": machine()}
    write_result("evaluate_reuse", {**payload, "results": results, "metric_gap": gap})


if __name__ == "__main__":
    main()
