"""`make gpu-check`: every GPU code path of RQA on one GPU, in one Markdown report.

1. the machine: GPU, CUDA, torch, faiss (with or without GPU support), the packages;
2. every test marked ``gpu``, wherever it lives (``pytest -m gpu tests``);
3. the whole configs/demo.yaml on the GPU: Ray Train with one GPU worker (bf16 ZeRO-2, the
   demo's global batch on one worker), Ray Data actors on the GPU, faiss on the GPU where the
   faiss build has it; each stage's wall time and dev nDCG@10 from the run's report;
4. benchmarks/encode.py, train.py and grad_cache.py on cuda, against sentence-transformers.

Each part runs in its own subprocess with its own time limit, inside one overall budget, so a
part that fails or hangs is reported as such and the next one still runs. The report is written
after every part (--out, default runs/gpu-check/gpu-check.md), so a run cut short keeps what it
measured. Offline nodes: RQA_MINILM (a local all-MiniLM-L6-v2) and RQA_SCIFACT (a BEIR SciFact
folder) name the model and data, as they do for the tests and benchmarks.
Usage: python benchmarks/gpu_check.py [--out DIR] [--budget-s 470] [--skip PART ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SCIFACT, minilm_path, quiet_environment, table

quiet_environment()

TRAINING_STAGES = ("train_dual_0", "train_cross", "train_dual_1", "train_dual_2", "train_joint")
INFERENCE_STAGES = ("mine", "denoise", "augment", "evaluate")
SEARCH_STAGES = ("mine", "augment", "evaluate")
BF16_ZERO2 = "configs/deepspeed/gpu_zero2_bf16.json"
PARTS = ("tests", "demo", "grad_cache", "encode", "train")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    parser.add_argument("--run-dir", type=Path, help="the demo's run directory (default OUT/demo)")
    parser.add_argument("--budget-s", type=float, default=470, help="all parts together")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--model", default=None, help="default: RQA_MINILM or the packaged one")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="a BEIR SciFact folder")
    return parser.parse_args()


class Report:
    """The Markdown report, rewritten after each part so that a cut-short run keeps its parts."""

    def __init__(self, out: Path):
        self.path = out / "gpu-check.md"
        self.sections: list[str] = []
        self.verdicts: list[list[str]] = []
        out.mkdir(parents=True, exist_ok=True)

    def add(self, part: str, verdict: str, seconds: float, body: str) -> None:
        self.verdicts.append([part, verdict, f"{seconds:.0f} s"])
        self.sections.append(f"## {part}\n\n{body.strip()}\n")
        summary = table(["part", "result", "wall"], self.verdicts)
        text = "\n".join(["# make gpu-check", "", summary, "", *self.sections])
        self.path.write_text(text)
        print(f"[gpu-check] {part}: {verdict} ({seconds:.0f} s)", flush=True)


def run_part(cmd: list[str], timeout_s: float, log: Path, env: dict | None = None) -> tuple:
    """``(return code or 'timed out', seconds, output)`` of ``cmd``, its output also in ``log``."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    env.setdefault("JAX_PLATFORMS", "cpu")  # no process may let JAX take the GPU (bm25.py)
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "timed out"
    return code, time.perf_counter() - started, log.read_text(errors="replace")


def tail(text: str, lines: int = 25) -> str:
    return "```\n" + "\n".join(text.rstrip().splitlines()[-lines:]) + "\n```"


def environment(args: argparse.Namespace) -> str:
    import torch

    rows = [["python", sys.version.split()[0]], ["torch", torch.__version__]]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        memory = f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
        rows += [
            ["GPU", f"{props.name}, {memory}"],
            ["CUDA (torch)", str(torch.version.cuda)],
            ["bf16", str(torch.cuda.is_bf16_supported())],
        ]
    rows.append(["faiss", faiss_state()])
    for name in ("transformers", "deepspeed", "ray", "sentence_transformers", "pyarrow"):
        try:
            rows.append([name, __import__(name).__version__])
        except Exception as err:  # noqa: BLE001 - the report says what is missing
            rows.append([name, f"not importable: {err}"])
    rows += [["model", str(args.model)], ["SciFact", str(args.scifact)]]
    return table(["what", "value"], rows)


def faiss_state() -> str:
    try:
        import faiss
    except ImportError:
        return "not installed"
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return f"{faiss.__version__}, {'GPU build, ' + str(gpus) + ' GPU(s)' if gpus else 'CPU build'}"


def faiss_has_gpu() -> bool:
    return "GPU build" in faiss_state()


def tests_part(args, budget: float) -> tuple[str, str, float]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests", "-rsfE",
           "-p", "no:cacheprovider", "--durations=10"]  # fmt: skip
    if importlib.util.find_spec("xdist") is not None:  # the tests are independent processes
        cmd += ["-n", "4"]
    # DeepSpeed on the CPU in the test process (its in-process engines); the tests that train
    # on the GPU start their subprocesses with DS_ACCELERATOR=cuda themselves
    code, took, out = run_part(cmd, budget, args.out / "tests.log", {"DS_ACCELERATOR": "cpu"})
    counts = re.findall(r"(\d+) (passed|failed|skipped|error|errors)", out)
    summary = ", ".join(f"{n} {what}" for n, what in counts) or "no summary"
    verdict = f"passed: {summary}" if code == 0 else f"FAILED ({code}): {summary}"
    return verdict, f"`pytest -m gpu tests`: {summary}\n\n" + tail(out, 40), took


def demo_overrides(faiss_gpu: bool) -> list[str]:
    """configs/demo.yaml on one GPU: each training stage on one GPU worker with the batch the
    demo's two CPU workers share (same global batch, same cross-batch negatives), bf16
    ZeRO-2; each inference stage on one GPU actor."""
    import yaml

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["stages"]
    sets = []
    for stage in TRAINING_STAGES:
        train = demo.get(stage, {}).get("train", {})
        workers, batch = train.get("workers", 1), train.get("batch_size", 32)
        sets += [f"stages.{stage}.train.{k}={v}" for k, v in (
            ("use_gpu", "true"), ("workers", 1), ("batch_size", workers * batch),
            ("deepspeed", BF16_ZERO2),
        )]  # fmt: skip
    for stage in INFERENCE_STAGES:
        sets += [f"stages.{stage}.{k}={v}" for k, v in (
            ("actors", 1), ("gpus_per_actor", 1), ("cpus_per_actor", 4), ("batch_size", 256),
        )]  # fmt: skip
    if faiss_gpu:
        sets += [f"stages.{stage}.faiss_gpu=true" for stage in SEARCH_STAGES]
    return [arg for value in sets for arg in ("--set", value)]


def demo_part(args, budget: float) -> tuple[str, str, float]:
    run_dir = args.run_dir or args.out / "demo"
    faiss_gpu = faiss_has_gpu()
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "configs/demo.yaml", "--model",
           str(args.model), "--data-beir", str(args.scifact), "--run-dir", str(run_dir),
           *demo_overrides(faiss_gpu)]  # fmt: skip
    env = {"DS_ACCELERATOR": "cuda"}
    code, took, out = run_part(cmd, budget, args.out / "demo.log", env)
    note = "faiss on the GPU" if faiss_gpu else "faiss on the CPU: this faiss build has no GPU"
    report = run_dir / "report.json"
    if not report.is_file():
        return f"FAILED ({code})", f"{note}\n\n" + tail(out, 40), took
    shown = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pipeline.py"), "--report", str(report)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    verdict = "passed" if code == 0 else f"FAILED ({code})"
    body = f"`rqa run configs/demo.yaml` on the GPU ({note}), {took:.0f} s:\n\n{shown.stdout}"
    return verdict, body if code == 0 else body + "\n" + tail(out, 30), took


BENCHMARKS = {
    "encode": ["benchmarks/encode.py", "--device", "cuda", "--docs", "2000", "--repeats", "3"],
    "train": [
        "benchmarks/train.py",
        "--device",
        "cuda",
        "--steps",
        "20",
        "--repeats",
        "2",
        "--batch-size",
        "64",
    ],  # fmt: skip
    "grad_cache": [
        "benchmarks/grad_cache.py",
        "--device",
        "cuda",
        "--batch-sizes",
        "32,128,512",
        "--keep-last",
        "2",
        "--steps",
        "4",
    ],  # fmt: skip
}


def benchmark_part(name: str):
    def part(args, budget: float) -> tuple[str, str, float]:
        env = {"DS_ACCELERATOR": "cuda", "RQA_MINILM": str(args.model),
               "RQA_SCIFACT": str(args.scifact)}  # fmt: skip
        cmd = [sys.executable, *BENCHMARKS[name]]
        code, took, out = run_part(cmd, budget, args.out / f"{name}.log", env)
        verdict = "passed" if code == 0 else f"FAILED ({code})"
        printed = out[out.find("\n|") :] if code == 0 and "\n|" in out else tail(out, 30)
        return verdict, f"`python {' '.join(BENCHMARKS[name])}`\n\n{printed}", took

    return part


RUNNERS = {"tests": tests_part, "demo": demo_part} | {n: benchmark_part(n) for n in BENCHMARKS}
# the most seconds each part may take (an H200 needs about half); the budget caps them all
CAPS_S = {"tests": 200, "demo": 300, "grad_cache": 200, "encode": 60, "train": 90}


def main() -> None:
    args = parse_args()
    args.model = args.model or minilm_path()
    args.out = args.out.resolve()
    report = Report(args.out)
    started = time.perf_counter()
    report.add("machine", "ok", 0.0, environment(args))
    for part in PARTS:
        left = args.budget_s - (time.perf_counter() - started)
        if part in args.skip:
            report.add(part, "skipped (--skip)", 0.0, "not run")
            continue
        if left < 20:
            report.add(part, "NOT RUN: budget spent", 0.0, f"{args.budget_s:.0f} s budget spent")
            continue
        limit = min(left, CAPS_S[part])
        verdict, body, took = RUNNERS[part](args, limit)
        if took >= limit - 1:
            verdict = f"TIMED OUT after {limit:.0f} s"
        report.add(part, verdict, took, body)
    total = time.perf_counter() - started
    print(f"\nwrote {report.path} ({total:.0f} s)\n")
    print(report.path.read_text())


if __name__ == "__main__":
    main()
