"""Does domain pre-training on the corpus help the first dual encoder? (docs/results.md, "Domain
pre-training")

For each start (the base model, and the base model after RetroMAE or unsupervised SimCSE over
the corpus at each pre-training learning rate), fine-tune a dual encoder on the train split
with configs/train/scifact_dual.yaml's settings (cross-batch loss over 32 passages, 2 epochs,
lr 2e-5, no hard negatives) once per seed, and score every model on the eval split by exact
search (nDCG@10, R@100). Pre-training and fine-tuning run through the library's training loop
(DeepSpeed, one process: `launcher: local`, on CUDA when there is one), so the same script runs
on a GPU node or, slowly, on a CPU. Search is exact (one matrix product), no Ray.

Usage: python benchmarks/pretrain.py --tables runs/scifact/prepare [--seeds 42 43 44]
           [--pretrain-lrs 5e-5 1e-5] [--methods retromae simcse] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from common import minilm_path, quiet_environment, table, write_result

quiet_environment()

import torch  # noqa: E402

from pipelines.config import PretrainStage  # noqa: E402
from pipelines.launch_settings import LaunchSettings  # noqa: E402
from pipelines.train_launcher import launch  # noqa: E402
from retrieval.encoding import encode_passages, encode_queries  # noqa: E402
from retrieval.metrics import evaluate  # noqa: E402
from retrieval.models import DualEncoder  # noqa: E402
from retrieval.tables.labels import read_qrels  # noqa: E402
from retrieval.tables.store import read_table  # noqa: E402
from retrieval.training.config import validate_train_config  # noqa: E402

# configs/scifact.yaml's model settings; the fine-tuning of configs/train/scifact_dual.yaml,
# its 2 workers x 16 as one worker x 32 (the same 32 passages per query's softmax)
MODEL_SETTINGS = dict(pooling="mean", normalize=True, similarity="cosine", temperature=0.05,
                      query_max_len=64, passage_max_len=256)  # fmt: skip
FINE_TUNE = dict(kind="dual", loss="cross_batch", hard_negatives=0, epochs=2, batch_size=32,
                 lr=2e-5, warmup_ratio=0.1)  # fmt: skip
PRETRAIN = dict(epochs=1, batch_size=32, warmup_ratio=0.1)  # scifact_pretrain.yaml's, 1 x 32


def train(args, raw: dict) -> Path:
    """Train one model through the library's loop in this process; its exported folder."""
    raw = {
        **raw, "model_settings": MODEL_SETTINGS, "use_gpu": torch.cuda.is_available(),
        "data": {**raw.get("data", {}), "tables": str(args.tables)}, "checkpoint_every": 10_000,
    }  # fmt: skip
    if args.smoke:
        raw["max_steps"] = 2
    return launch(validate_train_config(raw), LaunchSettings(launcher="local", workers=1))


def score(args, model_dir: Path, **overrides) -> dict[str, float]:
    """nDCG@10 and R@100 on the eval split, by exact search over the whole corpus."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = DualEncoder.from_pretrained(str(model_dir), **overrides).to(device)
    corpus = read_table(args.tables / "corpus")
    if args.smoke:
        corpus = corpus.slice(0, 300)
    queries = read_table(args.tables / f"queries-{args.split}")
    passages = encode_passages(
        model, corpus["title"].to_pylist(), corpus["text"].to_pylist(), 128,
        show_progress=False, precision="fp32",
    )  # fmt: skip
    vectors = encode_queries(model, queries["text"].to_pylist(), 128, show_progress=False)
    top = (torch.from_numpy(vectors) @ torch.from_numpy(passages).T).topk(100)
    pids = corpus["pid"].to_pylist()
    run = {
        qid: {pids[j]: s for s, j in zip(scores.tolist(), rows.tolist())}
        for qid, scores, rows in zip(queries["qid"].to_pylist(), top.values, top.indices)
    }
    return evaluate(read_qrels(args.tables / f"qrels-{args.split}"), run, ("ndcg@10", "recall@100"))


def pretrained_starts(args, base: Path) -> dict[str, Path]:
    """The base model, and one pre-trained model per method and learning rate."""
    starts = {"base": base}
    for lr in args.pretrain_lrs:
        for method in args.methods:
            name = f"{method} lr {lr:g}"
            keys = PretrainStage(method=method).method_keys()
            out = args.work / name.replace(" ", "-")
            started = time.time()
            starts[name] = train(args, {**keys, **PRETRAIN, "model": str(base), "lr": lr,
                                        "output_dir": str(out), "seed": args.seeds[0]})  # fmt: skip
            print(f"pre-trained {name} in {time.time() - started:.0f} s", flush=True)
    return starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=Path, required=True, help="a run's prepare folder")
    parser.add_argument("--model", default=None, help="base model (default: all-MiniLM-L6-v2)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--pretrain-lrs", type=float, nargs="+", default=[5e-5])
    parser.add_argument("--methods", nargs="+", default=["retromae", "simcse"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rqa-pretrain-benchmark"))
    parser.add_argument("--smoke", action="store_true", help="2 steps, 300 passages: a check")
    args = parser.parse_args()
    args.tables = args.tables.resolve()
    shutil.rmtree(args.work, ignore_errors=True)
    base = Path(args.model or minilm_path())
    rows, results = [], []
    for name, start in pretrained_starts(args, base).items():
        zero_shot = score(args, start, **MODEL_SETTINGS)
        tuned = []
        for seed in args.seeds:
            out = args.work / f"dual-{name.replace(' ', '-')}-{seed}"
            model = train(args, {**FINE_TUNE, "model": str(start), "output_dir": str(out),
                                 "data": {"split": "train"}, "seed": seed})  # fmt: skip
            tuned.append(score(args, model))
        ndcg = [m["ndcg@10"] for m in tuned]
        spread = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        results.append({"start": name, "zero_shot": zero_shot, "fine_tuned": tuned})
        rows.append([name, zero_shot["ndcg@10"], " / ".join(f"{x:.3f}" for x in ndcg),
                     statistics.mean(ndcg), spread,
                     statistics.mean(m["recall@100"] for m in tuned)])  # fmt: skip
    print(table(["start", "zero-shot nDCG@10", "fine-tuned nDCG@10 per seed", "mean", "sd",
                 "fine-tuned R@100"], rows))  # fmt: skip
    write_result("pretrain", {"seeds": args.seeds, "results": results})


if __name__ == "__main__":
    main()
