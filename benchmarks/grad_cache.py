"""Gradient caching: peak memory and speed of RQA's cached loop as the batch grows.

Three contenders train all-MiniLM-L6-v2 on SciFact's train (query, positive passage) pairs with
in-batch negatives, at each --batch-sizes: RQA's DeepSpeed loop as `rqa train-dual` runs it
(one process, fp32, `infonce`), the same loop with `grad_cache` (query and passage chunks of
--chunk), and sentence-transformers' SentenceTransformerTrainer with
CachedMultipleNegativesRankingLoss (mini_batch_size --chunk). Same model, lr, warm-up, weight
decay, clipping, temperature (scale 20 = 1 / 0.05), mean pooling, cosine; RQA truncates
queries at --query-max-len and passages at --passage-max-len, sentence-transformers both at
the passage length (SciFact queries are shorter than either).

Every run is its own subprocess: peak memory is that process's own maximum RSS (os.wait4), or
with --device cuda its peak of allocated GPU memory (torch.cuda.max_memory_allocated), and
examples/s is taken from the end of step 1 to the end of the last step, so loading and the
first step count for no one. Targets: the cached loop's peak memory grows < 1.3x from the
smallest batch to the largest, and its examples/s stays >= 0.8x the uncached loop's.
Usage: python benchmarks/grad_cache.py [--batch-sizes 32,128,512] [--chunk 16] [--steps 3]
       [--keep-last N] [--no-peer] [--device cuda]
       python benchmarks/grad_cache.py --quick   # tiny random BERT, batch 32 and 64, 2 steps
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CACHE, REPO, median, minilm_path, quiet_environment, table, write_result

quiet_environment()

from train import rqa_step_ends, scifact_tables, st_step_ends, steady_rate  # noqa: E402

UNCACHED, CACHED, PEER = "rqa", "rqa grad_cache", "sentence-transformers cached MNRL"
CONTENDERS = (UNCACHED, CACHED, PEER)
LR, WARMUP, WEIGHT_DECAY, TEMPERATURE = 3e-5, 0.1, 0.01, 0.05
RSS_GROWTH_TARGET, SPEED_TARGET = 1.3, 0.8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32,128,512", help="queries per step")
    parser.add_argument("--chunk", type=int, default=16, help="rows encoded at once (cached)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run (>= 2)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument(
        "--keep-last",
        type=int,
        default=1,
        help="cached loop: each side's last N chunks encoded once, their graphs kept (default "
        "1; 0 re-encodes every chunk, the loop's default)",
    )
    parser.add_argument(
        "--no-keep-last", dest="keep_last", action="store_const", const=0, help="--keep-last 0"
    )
    parser.add_argument(
        "--no-peer", action="store_true", help="skip sentence-transformers (sweeps of the loop)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="where every contender trains (cuda: DeepSpeed's CUDA accelerator, GPU memory)",
    )  # fmt: skip
    parser.add_argument("--query-max-len", type=int, default=32)
    parser.add_argument("--passage-max-len", type=int, default=64)
    parser.add_argument("--model", default=None, help="model folder (default: packaged MiniLM)")
    parser.add_argument(
        "--quick", action="store_true", help="prove it runs: tiny random BERT, 32,64, 2 steps"
    )
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def child_rqa(args: argparse.Namespace, cached: bool) -> list[float]:
    """Seconds from the start of training to the end of each step, from RQA's step log."""
    config = {
        "kind": "dual", "model": str(args.model),
        "data": {"tables": str(scifact_tables()), "split": "train"},
        "loss": "infonce", "hard_negatives": 0, "batch_size": args.batch_size,
        "epochs": args.steps + 1, "max_steps": args.steps, "lr": LR,
        "warmup_ratio": WARMUP, "weight_decay": WEIGHT_DECAY, "log_every": 1,
        "checkpoint_every": args.steps + 1, "use_gpu": args.device == "cuda",
        "model_settings": {
            "pooling": "mean", "normalize": True, "similarity": "cosine",
            "temperature": TEMPERATURE, "query_max_len": args.query_max_len,
            "passage_max_len": args.passage_max_len,
        },
    }  # fmt: skip
    if cached:
        config["grad_cache"] = {
            "query_chunk": args.chunk, "passage_chunk": args.chunk, "keep_last": args.keep_last
        }  # fmt: skip
    return rqa_step_ends(config, args.batch_size)


def child_st(args: argparse.Namespace) -> list[float]:
    """Seconds from the start of training to the end of each step of SentenceTransformerTrainer
    with CachedMultipleNegativesRankingLoss."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import CachedMultipleNegativesRankingLoss

    model = SentenceTransformer(str(args.model), device=args.device)
    model.max_seq_length = args.passage_max_len
    loss = CachedMultipleNegativesRankingLoss(
        model, scale=1 / TEMPERATURE, mini_batch_size=args.chunk
    )
    return st_step_ends(model, loss, args.steps, args.batch_size, seed=0, device=args.device)


def peak_gpu_mib(args: argparse.Namespace) -> float | None:
    """This (child) process's most allocated CUDA memory, MiB; None on the CPU."""
    if args.device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_child(contender: str, batch: int, args: argparse.Namespace) -> dict:
    """One training run in a subprocess: its step ends and its own peak memory (MiB): RSS,
    or on CUDA the most GPU memory it had allocated."""
    with tempfile.TemporaryDirectory(prefix="bench-grad-cache-") as tmp:
        out, log = Path(tmp) / "ends.json", Path(tmp) / "child.log"
        cmd = [
            sys.executable, __file__, "--child", contender, "--batch-size", str(batch),
            "--model", str(args.model), "--steps", str(args.steps), "--chunk", str(args.chunk),
            "--query-max-len", str(args.query_max_len),
            "--passage-max-len", str(args.passage_max_len), "--out", str(out),
            "--keep-last", str(args.keep_last), "--device", args.device,
        ]  # fmt: skip
        env = {**os.environ, "DS_ACCELERATOR": args.device, "PYTHONPATH": str(REPO)}
        env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
        with open(log, "w") as sink:
            proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().strip().splitlines()[-15:])
            raise SystemExit(f"{contender} at batch {batch} failed ({proc.returncode}):\n{tail}")
        run = json.loads(out.read_text())
    if len(run["ends"]) != args.steps:
        raise SystemExit(f"{contender} ran {len(run['ends'])} steps, expected {args.steps}")
    peak = run["peak_gpu_mib"] if args.device == "cuda" else usage.ru_maxrss / 1024  # KiB
    return {"ends": run["ends"], "peak_mib": peak}


def measure(args: argparse.Namespace, batches: list[int], contenders: tuple) -> dict:
    """``{batch: {contender: {"rates": [...], "rss": [...]}}}``, contenders rotating per round."""
    results = {b: {c: {"rates": [], "rss": []} for c in contenders} for b in batches}
    n = len(contenders)
    for r in range(args.repeats):
        for batch in batches:
            order = contenders[r % n :] + contenders[: r % n]
            for contender in order:
                run = run_child(contender, batch, args)
                cell = results[batch][contender]
                cell["rates"].append(steady_rate(run["ends"], batch))
                cell["rss"].append(run["peak_mib"])
                print(
                    f"  round {r + 1}/{args.repeats} batch {batch} {contender}: "
                    f"{cell['rates'][-1]:.2f} examples/s, peak {memory_name(args)} "
                    f"{cell['rss'][-1]:,.0f} MiB",
                    flush=True,
                )
    return results


def summarise(results: dict, batches: list[int], contenders: tuple) -> tuple[list[list], dict]:
    """Table rows, and the ratios the targets are about."""
    small, large = batches[0], batches[-1]
    rows, ratios = [], {"cached_vs_uncached_speed": {}, "rss_growth": {}}
    for batch in batches:
        cells = results[batch]
        base = cells[UNCACHED]["rates"]
        for contender in contenders:
            rates, rss = cells[contender]["rates"], cells[contender]["rss"]
            speed = median([a / b for a, b in zip(rates, base)])  # per round: same load
            growth = median(rss) / median(results[small][contender]["rss"])
            rows.append([batch, contender, median(rates), f"{speed:.2f}x", median(rss),
                         f"{growth:.2f}x"])  # fmt: skip
        ratios["cached_vs_uncached_speed"][batch] = median(
            [a / b for a, b in zip(cells[CACHED]["rates"], base)]
        )
    for contender in contenders:
        ratios["rss_growth"][contender] = median(results[large][contender]["rss"]) / median(
            results[small][contender]["rss"]
        )
    return rows, ratios


def memory_name(args: argparse.Namespace) -> str:
    return "GPU memory" if args.device == "cuda" else "RSS"


def verdict(ratios: dict, batches: list[int], memory: str) -> list[str]:
    growth = ratios["rss_growth"][CACHED]
    slowest = min(ratios["cached_vs_uncached_speed"].values())
    return [
        f"cached peak {memory} at batch {batches[-1]} / at {batches[0]}: {growth:.2f}x "
        f"(target < {RSS_GROWTH_TARGET}x: {'met' if growth < RSS_GROWTH_TARGET else 'MISSED'})",
        f"cached / uncached examples/s, worst batch: {slowest:.2f}x "
        f"(target >= {SPEED_TARGET}x: {'met' if slowest >= SPEED_TARGET else 'MISSED'})",
    ]


def main() -> None:
    args = parse_args()
    if args.quick:
        from memory import tiny_model

        args.model = args.model or tiny_model()
        args.batch_sizes, args.steps = "32,64", 2
    args.model = args.model or minilm_path()
    if args.child:
        ends = child_st(args) if args.child == PEER else child_rqa(args, args.child == CACHED)
        args.out.write_text(json.dumps({"ends": ends, "peak_gpu_mib": peak_gpu_mib(args)}))
        return
    if args.device == "cuda" and not cuda_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2 (step 1 is not timed)")
    batches = sorted(int(b) for b in args.batch_sizes.split(","))
    scifact_tables()  # prepared once, outside the measured runs
    contenders = CONTENDERS[:2] if args.no_peer else CONTENDERS
    results = measure(args, batches, contenders)
    rows, ratios = summarise(results, batches, contenders)
    memory = memory_name(args)
    headers = ["batch", "trainer", "examples/s", "vs rqa", f"peak {memory} MiB",
               f"vs batch {batches[0]}"]  # fmt: skip
    kept = f"last {args.keep_last} kept" if args.keep_last else "every chunk re-encoded"
    print(
        f"\nSciFact train pairs, in-batch negatives, chunk {args.chunk} ({kept}), "
        f"{args.steps} steps (steady rate from step 2), {args.repeats} round(s), max length "
        f"{args.query_max_len}/{args.passage_max_len}, model {Path(args.model).name}, "
        f"{args.device}\n"
    )
    print(table(headers, rows))
    print("\n" + "\n".join(verdict(ratios, batches, memory)))
    settings = vars(args) | {"out": None, "model": str(args.model), "batches": batches}
    write_result("grad_cache", {"settings": settings, "results": results, "ratios": ratios})


if __name__ == "__main__":
    CACHE.mkdir(parents=True, exist_ok=True)
    main()
