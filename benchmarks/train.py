"""Training throughput: RQA's dual-encoder loop against sentence-transformers' trainer.

Both train all-MiniLM-L6-v2 on SciFact's train (query, positive passage) pairs with in-batch
negatives only: RQA's `infonce` loss in its DeepSpeed loop (one process, fp32, as
`rqa train-dual` runs with `launcher: local`) and sentence-transformers'
MultipleNegativesRankingLoss in its SentenceTransformerTrainer. Same model, batch size, learning
rate, warm-up, weight decay, gradient clipping, temperature (scale 20 = 1 / 0.05), mean pooling,
cosine, and max lengths (queries are far shorter than either side's cap). Each side trains in
its own subprocess, once per round, the starting side rotating; examples/s is taken from the
end of step 1 to the end of the last step, so model loading, start-up and the first step's
one-off costs count for neither side.
With ``--device cuda`` both train on the GPU (RQA: ``use_gpu``, DeepSpeed's CUDA accelerator;
sentence-transformers: ``use_cpu=False``); ``--precision bf16`` trains both in bf16 mixed
precision (RQA: DeepSpeed ``bf16`` with float32 master weights; sentence-transformers:
``bf16=True``, torch autocast).
Usage: python benchmarks/train.py [--steps 10] [--batch-size 32] [--repeats 3]
       [--device cuda] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE, REPO, SCIFACT, median, minilm_path, quiet_environment, table, write_result

quiet_environment()

PEER = "sentence-transformers"
LR, WARMUP, WEIGHT_DECAY, TEMPERATURE = 3e-5, 0.1, 0.01, 0.05
QUERY_MAX_LEN, PASSAGE_MAX_LEN = 64, 256


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per run (>= 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="queries per step")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--model", default=None, help="model folder (default: packaged MiniLM)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--child", choices=("rqa", PEER), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def scifact_tables() -> Path:
    """SciFact prepared as RQA tables once (corpus, queries, qrels), cached."""
    tables = CACHE / "scifact-tables"
    if not (tables / "corpus" / "_manifest.json").is_file():
        from retrieval.tables.readers.beir import prepare_beir

        prepare_beir(SCIFACT, tables)
    return tables


def train_pairs() -> list[tuple[str, str]]:
    """(query, title + " " + text) for every judged train pair, in qrels order."""
    from retrieval.models.dual_encoder import passage_text

    queries = _jsonl(SCIFACT / "queries.jsonl", "text")
    docs = _jsonl(SCIFACT / "corpus.jsonl", None)
    pairs = []
    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, pid, rel = line.rstrip("\n").split("\t")[:3]
            if int(rel) > 0:
                doc = docs[pid]
                pairs.append((queries[qid], passage_text(doc.get("title"), doc["text"])))
    return pairs


def _jsonl(path: Path, field: str | None) -> dict:
    with open(path, encoding="utf-8") as f:
        rows = (json.loads(line) for line in f if line.strip())
        return {str(r["_id"]): (r[field] if field else r) for r in rows}


def child_rqa(args: argparse.Namespace) -> list[float]:
    """Seconds from the start of training to the end of each step, read from RQA's step log."""
    config = {
        "kind": "dual", "model": args.model,
        "data": {"tables": str(scifact_tables()), "split": "train"},
        "loss": "infonce", "hard_negatives": 0, "batch_size": args.batch_size,
        "epochs": args.steps + 1, "max_steps": args.steps, "lr": LR, "warmup_ratio": WARMUP,
        "weight_decay": WEIGHT_DECAY, "seed": args.seed,
        "log_every": 1, "checkpoint_every": args.steps + 1, "use_gpu": args.device == "cuda",
        "model_settings": {
            "pooling": "mean", "normalize": True, "similarity": "cosine",
            "temperature": TEMPERATURE, "query_max_len": QUERY_MAX_LEN,
            "passage_max_len": PASSAGE_MAX_LEN,
        },
    }  # fmt: skip
    if args.precision == "bf16":
        config["deepspeed"] = str(REPO / "configs" / "deepspeed" / "bf16.json")
    return rqa_step_ends(config, args.batch_size)


def rqa_step_ends(config: dict, batch_size: int) -> list[float]:
    """Train with RQA's loop in this process on ``config`` (a TrainConfig mapping; its
    output_dir is set here); seconds from the start of training to the end of each step."""
    import yaml

    from retrieval.training.config import load_train_config
    from retrieval.training.loop import train_worker

    with tempfile.TemporaryDirectory(prefix="rqa-bench-train-") as tmp:
        path = Path(tmp) / "train.yaml"
        path.write_text(yaml.safe_dump({**config, "output_dir": str(Path(tmp) / "out")}))
        train_worker(load_train_config(path))
        log = Path(tmp) / "out" / "train_log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()]
    # each record's rate is examples so far over seconds so far, from the start of step 1
    return [r["step"] * batch_size / r["examples_per_s"] for r in records]


def child_st(args: argparse.Namespace) -> list[float]:
    """Seconds from the start of training to the end of each step of SentenceTransformerTrainer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(args.model, device=args.device)
    model.max_seq_length = PASSAGE_MAX_LEN
    loss = MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE)
    return st_step_ends(
        model, loss, args.steps, args.batch_size, args.seed, args.device, args.precision
    )


def st_step_ends(
    model, loss, steps: int, batch_size: int, seed: int, device: str = "cpu", precision="fp32"
) -> list[float]:
    """Train ``model`` with ``loss`` on the benchmark's pairs in SentenceTransformerTrainer (the
    settings of RQA's side); seconds from the start of training to the end of each step."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter() - self.started)

    pairs = train_pairs()
    dataset = Dataset.from_dict(
        {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="st-bench-train-") as tmp:
        training = SentenceTransformerTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=LR, warmup_ratio=WARMUP, weight_decay=WEIGHT_DECAY, max_grad_norm=1.0,
            seed=seed, save_strategy="no", report_to="none", logging_steps=10**6,
            disable_tqdm=True, dataloader_drop_last=True, use_cpu=device == "cpu",
            bf16=precision == "bf16",
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=model, args=training, train_dataset=dataset, loss=loss, callbacks=[clock]
        )
        trainer.train()
    return clock.ends


def run_child(side: str, args: argparse.Namespace, seed: int) -> list[float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            sys.executable, __file__, "--child", side, "--model", args.model,
            "--steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--seed", str(seed), "--out", out.name, "--device", args.device,
            "--precision", args.precision,
        ]  # fmt: skip
        env = {**os.environ, "DS_ACCELERATOR": args.device, "PYTHONPATH": str(REPO)}
        env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{side} run failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


def steady_rate(ends: list[float], batch_size: int) -> float:
    """Examples/s from the end of step 1 to the end of the last step."""
    return (len(ends) - 1) * batch_size / (ends[-1] - ends[0])


def main() -> None:
    args = parse_args()
    args.model = args.model or minilm_path()
    if args.child:
        ends = (child_rqa if args.child == "rqa" else child_st)(args)
        args.out.write_text(json.dumps(ends))
        return
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2 (step 1 is not timed)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
    scifact_tables()  # prepared once, outside the timed runs
    sides = ["rqa", PEER]
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(args.repeats):
        for side in sides[r % 2 :] + sides[: r % 2]:
            ends = run_child(side, args, seed=r)
            if len(ends) != args.steps:
                raise SystemExit(f"{side} ran {len(ends)} steps, expected {args.steps}")
            rates[side].append(steady_rate(ends, args.batch_size))
            print(f"  round {r + 1}/{args.repeats} {side}: {rates[side][-1]:.2f} examples/s")
    ratio = median([a / b for a, b in zip(rates["rqa"], rates[PEER])])
    rows = [
        [PEER, f"{median(rates[PEER]):.2f}", "1.00x"],
        [f"rqa (DeepSpeed loop, {args.precision})", f"{median(rates['rqa']):.2f}", f"{ratio:.2f}x"],
    ]
    print(
        f"\nSciFact train pairs, batch {args.batch_size}, {args.steps} steps (steady rate from "
        f"step 2), {args.repeats} rounds, in-batch negatives, max length {PASSAGE_MAX_LEN}, "
        f"{args.device}, {args.precision}\n"
    )
    print(table(["trainer", "examples/s", "vs ST"], rows))
    write_result("train", {"settings": vars(args) | {"out": None}, "rates": rates, "ratio": ratio})


if __name__ == "__main__":
    main()
