"""Re-ranker levers judged over seeds: train_cross retrained with one change, on each seed's own
finished baseline run, and scored on that run's final dev list.

For every seed, the baseline is benchmarks/ablation.py's run of the config as shipped
(runs/ablation/NAME/baseline-sS: run it first). Each lever of benchmarks/reranker_lever_rows.py
gets its own folder, runs/reranker-levers/NAME/LEVER-sS, which starts with hard links of the
baseline's stages train_cross reads (prepare, train_dual_0, mine), then `rqa run --only
train_cross` with the lever's --set overrides. Every re-ranker (the baseline's own train_cross
and each lever's) scores the same list: the baseline's final retriever's top ``--depth`` dev
passages (benchmarks/reranker.py's scoring, cached); beside them, the run's final re-ranker
(train_joint's) as its evaluate stage scored that list (run-rerank.trec). The table gives nDCG@10
per seed, re-ranked alone and fused with the retriever by RRF, the paired change against the
baseline's re-ranker, and the margin over the final retriever that issue 33 asks of a re-ranker
(>= 0.02 in every seed); two more give the means by re-ranking depth, alone and fused.

Usage:
  python benchmarks/reranker_levers.py [--config configs/demo.yaml] [--seeds 0,1]
      [--levers double_epochs,base_init] [--table]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from ablation import rqa
from ablation_rows import BASELINE, seed_set
from ablation_runs import Setup, shown, stages_read_by, start_row_run
from common import REPO, minilm_path, table, write_result
from reranker import DEPTHS, depth_rows, scored
from reranker_lever_rows import Lever, chosen_levers

from pipelines.config import load_pipeline_config
from retrieval.metrics import read_trec_run
from retrieval.rerank import top_of_run
from retrieval.tables.labels import read_qrels

STAGE = "train_cross"
SPLIT = "dev"
# the run's final re-ranker (train_joint's) as the evaluate stage scored it: its own TREC run
FINAL = "final (evaluate)"
# the margin over the final retriever a re-ranker must have in every seed (issue 33)
TARGET_MARGIN = 0.02


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/demo.yaml")
    parser.add_argument("--seeds", default="0,1", help="comma-separated values of `seed`")
    parser.add_argument("--levers", default=None, help="comma-separated lever names (all)")
    parser.add_argument("--baselines", type=Path, default=REPO / "runs/ablation",
                        help="benchmarks/ablation.py's --root: NAME/baseline-sS")  # fmt: skip
    parser.add_argument("--root", type=Path, default=REPO / "runs/reranker-levers")
    parser.add_argument("--model", default=None, help="`rqa run --model` (packaged MiniLM)")
    parser.add_argument("--depth", type=int, default=100, choices=DEPTHS,
                        help="re-rank the final top N")  # fmt: skip
    parser.add_argument("--table", action="store_true", help="only score and print")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def lever_sets(setup: Setup, lever: Lever, seed: int) -> list[str]:
    """The lever's --set overrides for this seed, computed from the config as shipped."""
    shipped = setup.load([seed_set(seed)], setup.run_dir(lever.name, seed))
    return [seed_set(seed), *lever.sets(shipped)]


def run_lever(setup: Setup, baseline_dir: Path, lever: Lever, seed: int) -> bool:
    """train_cross with the lever, in a folder started from the baseline's upstream stages;
    whether it finished."""
    run_dir, sets = setup.run_dir(lever.name, seed), lever_sets(setup, lever, seed)
    config = setup.load(sets, run_dir)
    shared = stages_read_by(config, STAGE)
    linked = start_row_run(baseline_dir, run_dir, shared)  # --only: they are read as they are
    print(f"\n## {lever.name}, seed {seed}: linked {', '.join(linked) or 'nothing new'}")
    return rqa([*setup.command(sets, run_dir), "--only", STAGE]) == 0


def final_list(baseline_dir: Path, depth: int) -> tuple[str, dict]:
    """The baseline's last dense stage and its top ``depth`` per dev query (what evaluate
    re-ranks)."""
    runs = sorted((baseline_dir / "evaluate").glob("run-train_*.trec"))
    if not runs:
        raise SystemExit(f"{baseline_dir}/evaluate: no run-train_*.trec (run the baseline)")
    return runs[-1].stem.removeprefix("run-"), top_of_run(read_trec_run(runs[-1]), depth)


def seed_scores(setup: Setup, baselines: Path, levers: list[Lever], seed: int, depth: int):
    """For a seed: the final retriever's stage and nDCG@10, and {re-ranker: {d: (alone,
    fused)}} after re-ranking its top d, for each d of DEPTHS up to ``depth`` (a pair's logit
    does not depend on the list it is in, so the top ``depth`` is scored once)."""
    baseline_dir = baselines / f"{BASELINE}-s{seed}"
    tables = baseline_dir / "prepare"
    retriever, top = final_list(baseline_dir, depth)
    qrels = read_qrels(tables / f"qrels-{SPLIT}")
    judged = {q: qrels[q] for q in top if q in qrels}
    folders = {BASELINE: baseline_dir / STAGE / "model"}
    folders |= {lever.name: setup.run_dir(lever.name, seed) / STAGE / "model" for lever in levers}
    found, own = {}, None
    for name, folder in folders.items():
        if not (folder / "config.json").is_file():
            continue
        rows = depth_rows(name, name, top, scored(folder, top, tables, SPLIT, None), judged)
        found[name] = {row[2]: (row[4], row[5]) for row in rows if row[2] <= depth}
        own = rows[0][3]
    final = evaluated_logits(baseline_dir, top)
    if final is not None:
        rows = depth_rows(FINAL, FINAL, top, final, judged)
        found[FINAL] = {row[2]: (row[4], row[5]) for row in rows if row[2] <= depth}
        own = rows[0][3]
    return retriever, own, found


def evaluated_logits(baseline_dir: Path, top: dict) -> dict | None:
    """The final re-ranker's logits for ``top`` from the evaluate stage's run-rerank.trec (the
    scores behind its reported rerank_ndcg@10, so nothing is scored again); None where that
    run lacks a pair of ``top`` (evaluate re-ranked less deep)."""
    path = baseline_dir / "evaluate" / "run-rerank.trec"
    if not path.is_file():
        return None
    logits = read_trec_run(path)
    if any(p not in logits.get(q, {}) for q in top for p in top[q]):
        return None
    return logits


def summary_rows(names: list[str], seeds: list[int], scores: dict, depth: int) -> list[list]:
    """One row per re-ranker at ``depth``: alone per seed, mean, paired change against the
    baseline's re-ranker, the fused mean and its change, and its margin over the retriever
    per seed."""
    rows = []
    for name in names:
        have = [s for s in seeds if name in scores[s][2] and BASELINE in scores[s][2]]
        if not have:
            continue
        alone = {s: scores[s][2][name][depth][0] for s in have}
        fused = {s: scores[s][2][name][depth][1] for s in have}
        change = [alone[s] - scores[s][2][BASELINE][depth][0] for s in have]
        fused_change = [fused[s] - scores[s][2][BASELINE][depth][1] for s in have]
        margins = [alone[s] - scores[s][1] for s in have]
        rows.append([
            name, *(round(alone[s], 4) if s in alone else "-" for s in seeds),
            round(statistics.mean(alone.values()), 4),
            "-" if name == BASELINE else f"{statistics.mean(change):+.4f}",
            round(statistics.mean(fused.values()), 4),
            "-" if name == BASELINE else f"{statistics.mean(fused_change):+.4f}",
            " / ".join(f"{m:+.3f}" for m in margins),
            f"{sum(m >= TARGET_MARGIN for m in margins)} of {len(seeds)}",
        ])  # fmt: skip
    return rows


def depth_means(
    names: list[str], seeds: list[int], scores: dict, depth: int, fused: bool = False
) -> list[list]:
    """Per re-ranker, its mean nDCG@10 over the seeds it ran, after re-ranking the top d for
    each d of DEPTHS up to ``depth``, alone (or ``fused`` with the retriever by RRF): where in
    the list a lever helps or hurts, and how deep evaluate should re-rank."""
    part = 1 if fused else 0
    depths = [d for d in DEPTHS if d <= depth]
    rows = [["retriever", *(round(statistics.mean(scores[s][1] for s in seeds), 4)
                            for _ in depths)]]  # fmt: skip
    for name in names:
        have = [s for s in seeds if name in scores[s][2]]
        if have:
            rows.append([name, *(round(statistics.mean(scores[s][2][name][d][part] for s in have),
                                       4) for d in depths)])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)  # configs name their data relative to the repository, as `rqa run` reads it
    levers = chosen_levers(args.levers)
    name = load_pipeline_config(args.config).name
    setup = Setup(args.config, args.root / name, args.model or minilm_path())
    baselines = args.baselines / name
    failed, commands = [], {}
    for lever in levers:
        for seed in args.seeds:
            baseline_dir = baselines / f"{BASELINE}-s{seed}"
            if not (baseline_dir / "evaluate" / "metrics.json").is_file():
                raise SystemExit(f"{baseline_dir}: no finished baseline; run python "
                                 f"benchmarks/ablation.py --config {args.config} --seeds "
                                 f"{seed} --rows baseline")  # fmt: skip
            run_dir, sets = setup.run_dir(lever.name, seed), lever_sets(setup, lever, seed)
            commands[run_dir.name] = shown([*setup.command(sets, run_dir), "--only", STAGE])
            if not args.table and not run_lever(setup, baseline_dir, lever, seed):
                failed.append(run_dir.name)
    scores = {seed: seed_scores(setup, baselines, levers, seed, args.depth) for seed in args.seeds}
    headers = ["re-ranker", *(f"alone, seed {s}" for s in args.seeds), "mean",
               "paired change", "+ RRF, mean", "paired change",
               "alone - retriever", f">= +{TARGET_MARGIN}"]  # fmt: skip
    names = [BASELINE, FINAL, *(lever.name for lever in levers)]
    rows = summary_rows(names, args.seeds, scores, args.depth)
    by_depth = depth_means(names, args.seeds, scores, args.depth)
    fused_by_depth = depth_means(names, args.seeds, scores, args.depth, fused=True)
    retrievers = ", ".join(f"seed {s} {scores[s][0]} {scores[s][1]:.4f}" for s in args.seeds)
    print(f"\n{name}: dev nDCG@10 of each re-ranker over the final top {args.depth} "
          f"(retriever: {retrievers})\n\n{table(headers, rows)}")  # fmt: skip
    depth_headers = ["re-ranker, mean over seeds", *(f"top {d}" for d in DEPTHS if d <= args.depth)]
    print(f"\nalone, by re-ranking depth\n\n{table(depth_headers, by_depth)}")
    print(f"\n+ RRF, by re-ranking depth\n\n{table(depth_headers, fused_by_depth)}")
    write_result(f"reranker-levers-{name}", {
        "config": str(args.config), "depth": args.depth, "seeds": args.seeds,
        "retriever": {s: scores[s][:2] for s in args.seeds},
        "rerankers": {s: scores[s][2] for s in args.seeds}, "table": rows, "by_depth": by_depth,
        "fused_by_depth": fused_by_depth,
        "failed": failed, "commands": commands,
    })  # fmt: skip
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
