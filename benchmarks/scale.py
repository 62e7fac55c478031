"""Scale-out: wall time, driver memory and actor memory of every stage of `rqa run` as the
corpus grows.

The data is synthetic and MS MARCO-shaped, written as a BEIR folder: N passages of 50-70 random
words from a fixed vocabulary (the 21k whole words of MiniLM's vocabulary, one token each, no
titles), Q train and E dev queries with one positive each, and U unlabeled queries for augment;
a query is 4-8 words drawn from its positive passage, so the task is learnable. The model is a
random 2-layer BERT (hidden 32) with MiniLM's tokenizer, so the model's cost is small and what
grows with N is the pipeline's own work: reading, encoding, searching, looking passages up.

Every stage of the RocketQA recipe runs (plus train_joint), as `rqa run CONFIG` in a
subprocess: inference stages on one Ray Data actor (``actors: 1``), training on Ray Train
(``launcher: ray``) for a few steps, no BM25 baseline in evaluate. While it runs, a thread here
samples the RSS of the driver (the `rqa run` process) and of each Ray worker process below it,
and charges each sample to the stage the driver's log says it is in. Wall times are the
runner's own (each stage's manifest); the time of each step inside a stage (encode corpus,
search, cross-encoder, ...) comes from the driver's progress bars.

Writes benchmarks/results/scale.json and a copy per size (scale-N.json); with two or more sizes
there, prints them side by side (also alone: --compare).
Usage: python benchmarks/scale.py --passages N --train-queries Q --eval-queries E
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    CACHE,
    REPO,
    RESULTS,
    minilm_path,
    quiet_environment,
    save_tiny_bert,
    table,
    write_result,
)

quiet_environment()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

from pipelines.process_memory import EverySeconds, tree_rss  # noqa: E402

MB = 2**20
PASSAGE_WORDS = (50, 70)  # MS MARCO passages average ~56 words
QUERY_WORDS = (4, 8)  # MS MARCO queries average ~6 words
CHUNK_PASSAGES = 10_000  # passages generated at a time
SAMPLE_EVERY_S = 0.25
STAGE_STARTS = re.compile(r"stage \d+/\d+ (\w+)\s+running")
STAGE_ENDS = re.compile(r"stage (\w+)\s+done in")
# a bar of the driver opening ("encode corpus:   0%|") and finishing
# ("encode corpus: 100%|####| 20000/20000 [00:07<00:00, 2857.14it/s]")
OPENED_BAR = re.compile(r"([a-z][\w -]*?):   0%\|")
FINISHED_BAR = re.compile(r"([a-z][\w -]*?): 100%\|[^|]*\| (\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")
# the inference layer's bars (pipelines/inference) and BM25's; training reports its own time
STEP_BARS = ("encode corpus", "encode queries", "search", "cross-encoder", "bm25 candidates")
RAY_AGENTS = ("DashboardAgent", "RuntimeEnvAgent")  # Ray's per-node agents, titled as workers
ACTOR_NAME = re.compile(r"[^.(]*(\(.*\))?")  # up to the method: "Name(args)" or "Name"
HEADERS = ["stage", "wall s", "driver peak RSS MB", "driver CPU s", "driver received MB",
           "actor peak RSS MB", "largest actor", "steps (items in s)"]  # fmt: skip
# what the issue asks of the data plane at 1M passages
RECEIVED_TARGET_MB, DRIVER_CPU_SHARE, SEARCH_SPEEDUP = 50, 0.10, 1.6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20_000, help="corpus size N")
    parser.add_argument("--train-queries", type=int, help="Q (default N / 20, as 50k per 1M)")
    parser.add_argument("--eval-queries", type=int, default=2_000, help="E (dev queries)")
    parser.add_argument("--unlabeled-queries", type=int, help="U for augment (default Q / 2)")
    parser.add_argument("--bm25-negatives", type=int, default=30,
                        help="train_dual_0's BM25 negatives per query, as configs/msmarco.yaml "
                             "(0: none, and no BM25 index)")  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=10, help="steps of each training stage")
    parser.add_argument("--cpus-per-actor", type=float, default=1,
                        help="inference actors' CPUs (and torch threads); 1 on a shared 2-core "
                             "machine, where 2 OpenMP threads ran 8x slower than 1")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128, help="inference batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-run", action="store_true", help="keep the run folder afterwards")
    parser.add_argument(
        "--searchers", default="1,2",
        help="after the run, time mine's search again with each of these numbers of searchers "
        "(Ray actors of --cpus-per-actor CPUs); '' skips it",
    )  # fmt: skip
    parser.add_argument("--compare", action="store_true",
                        help="only print the saved scale-N.json results side by side")  # fmt: skip
    args = parser.parse_args()
    args.train_queries = args.train_queries or max(100, args.passages // 20)
    args.unlabeled_queries = args.unlabeled_queries or max(50, args.train_queries // 2)
    return args


# ---------------------------------------------------------------------------------------------
# Data and model


@dataclass(frozen=True)
class Sizes:
    passages: int
    train: int
    eval: int
    unlabeled: int
    seed: int

    @property
    def queries(self) -> int:
        return self.train + self.eval + self.unlabeled


def vocabulary() -> list[str]:
    """MiniLM's whole-word entries (alphabetic, ASCII, 3+ letters): one token per word, so a
    passage's length in tokens is its length in words."""
    words = (Path(minilm_path()) / "vocab.txt").read_text(encoding="utf-8").split()
    return [w for w in words if w.isalpha() and w.isascii() and len(w) >= 3]


def query_of(words: list[int], vocab: list[str], rng: np.random.Generator) -> str:
    """A few words of a passage, in the passage's order: its positive is findable by words."""
    size = min(len(words), int(rng.integers(QUERY_WORDS[0], QUERY_WORDS[1] + 1)))
    picked = np.sort(rng.choice(len(words), size=size, replace=False))
    return " ".join(vocab[words[i]] for i in picked)


def write_corpus(folder: Path, sizes: Sizes, rng: np.random.Generator) -> list[tuple[int, str]]:
    """corpus.jsonl, a chunk of passages at a time; returns each query's (positive pid, text):
    train queries first, then dev, then unlabeled, each on its own passage."""
    vocab = vocabulary()
    positives = rng.choice(sizes.passages, size=sizes.queries, replace=False)
    query_at = {int(pid): i for i, pid in enumerate(positives)}
    queries: list[tuple[int, str]] = [(int(pid), "") for pid in positives]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        for start in range(0, sizes.passages, CHUNK_PASSAGES):
            count = min(CHUNK_PASSAGES, sizes.passages - start)
            lengths = rng.integers(PASSAGE_WORDS[0], PASSAGE_WORDS[1] + 1, size=count)
            picks = rng.integers(len(vocab), size=int(lengths.sum())).tolist()
            ends = np.cumsum(lengths).tolist()
            lines = []
            for i, end in enumerate(ends):
                words, pid = picks[end - int(lengths[i]) : end], start + i
                text = " ".join(vocab[w] for w in words)  # letters only: no JSON escaping
                lines.append(f'{{"_id": "{pid}", "title": "", "text": "{text}"}}\n')
                if pid in query_at:
                    queries[query_at[pid]] = (pid, query_of(words, vocab, rng))
            out.writelines(lines)
    return queries


def write_queries(folder: Path, sizes: Sizes, queries: list[tuple[int, str]]) -> None:
    """queries.jsonl and qrels/{train,dev}.tsv (qids 0..Q+E-1), and unlabeled.txt."""
    (folder / "qrels").mkdir()
    splits = {"train": range(sizes.train), "dev": range(sizes.train, sizes.train + sizes.eval)}
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        for qid in range(sizes.train + sizes.eval):
            out.write(json.dumps({"_id": str(qid), "text": queries[qid][1]}) + "\n")
    for split, qids in splits.items():
        lines = [f"{qid}\t{queries[qid][0]}\t1\n" for qid in qids]
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(lines)
        )
    unlabeled = [text for _, text in queries[sizes.train + sizes.eval :]]
    (folder / "unlabeled.txt").write_text("\n".join(unlabeled) + "\n")


def synthetic_data(sizes: Sizes) -> Path:
    """The BEIR folder of these sizes, generated once and cached (a marker file says it is
    complete, so an interrupted generation is redone)."""
    folder = CACHE / f"scale-data-{sizes.passages}-{sizes.train}-{sizes.eval}-{sizes.unlabeled}"
    marker = folder / "sizes.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(sizes):
        return folder
    if sizes.queries > sizes.passages:
        raise SystemExit(f"{sizes.queries:,} queries need as many passages (each its own)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"writing synthetic data: {sizes}", flush=True)
    started = time.perf_counter()
    rng = np.random.default_rng(sizes.seed)
    write_queries(folder, sizes, write_corpus(folder, sizes, rng))
    marker.write_text(json.dumps(asdict(sizes)))
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def tiny_model() -> Path:
    """A random 2-layer BERT (hidden 32) with MiniLM's tokenizer, built as tests/conftest.py's
    tiny_bert_dir: dual encoder and cross-encoder start from it."""
    folder = CACHE / "scale-tiny-bert"
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    tmp = CACHE / "scale-tiny-bert.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_tiny_bert(tmp)
    tmp.rename(folder)
    return folder


def calibrate(data: Path, model: Path, threads: float) -> float:
    """Passages/s of the tiny model on 2,048 of the corpus's passages, encoded here as an
    inference actor encodes them (same threads, precision auto): how fast this shared machine
    is at the time, so that runs made at different times can be compared."""
    import torch

    from retrieval.encoding import encode_passages
    from retrieval.models import DualEncoder

    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(2048), f)]
    encoder = DualEncoder.from_pretrained(str(model), passage_max_len=128).eval()
    torch.set_num_threads(max(1, int(threads)))
    started = time.perf_counter()
    encode_passages(encoder, [""] * len(texts), texts, 128, show_progress=False, precision="auto")
    return len(texts) / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# The pipeline config


def training(args: argparse.Namespace, **keys) -> dict:
    """A few steps on Ray Train, one CPU worker: enough to run every code path of the stage."""
    return {"max_steps": args.max_steps, "batch_size": 32, "workers": 1, "launcher": "ray",
            "checkpoint_every": 1000, "lr": 1.0e-4, **keys}  # fmt: skip


def inference(args: argparse.Namespace) -> dict:
    """One Ray Data actor per inference step: the heavy work leaves the driver."""
    return {"actors": 1, "cpus_per_actor": args.cpus_per_actor, "batch_size": args.batch_size}


def pipeline_config(args: argparse.Namespace, data: Path, model: Path, run_dir: Path) -> dict:
    """configs/msmarco.yaml's recipe at a size one CPU runs: the same stages, lengths and k, with
    fewer mined negatives (8, not 128) and a few training steps. Denoise and augment label
    ``relative`` to the re-ranker's own scores, so a barely trained re-ranker still passes
    examples on and later stages see data of realistic size."""
    dual_0 = {"hard_negatives": 1} if args.bm25_negatives else {"random_negatives": True}
    cross = {"loss": "pointwise_bce", "group_size": 4, "cross_max_len": 160}
    return {
        "name": f"scale-{args.passages}",
        "run_dir": str(run_dir),
        "preset": "rocketqa",
        "model": str(model),
        "model_settings": {"query_max_len": 32, "passage_max_len": 128},
        "data": {"beir": str(data), "train_split": "train", "eval_split": "dev"},
        "seed": args.seed,
        "stages": {
            "train_dual_0": {"bm25_negatives": args.bm25_negatives,
                             "train": training(args, **dual_0)},
            "mine": {"depth": 1000, "negatives": 8, **inference(args)},
            "train_cross": {"train": training(args, **cross)},
            "denoise": {"mode": "relative", "margin": 0.0, "undenoised": 4, **inference(args)},
            "train_dual_1": {"train": training(args, hard_negatives=1, random_negatives=True)},
            "augment": {"queries_file": str(data / "unlabeled.txt"), "depth": 20,
                        "mode": "relative", "margin": 0.0, **inference(args)},
            "train_dual_2": {"train": training(args, hard_negatives=1, random_negatives=True)},
            "train_joint": {"enabled": True,
                            "train": training(args, group_size=4, cross_max_len=160)},
            "evaluate": {"k": 1000, "rerank_depth": 100, "bm25": False, **inference(args)},
        },
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Measuring the run


@dataclass
class StagePeaks:
    """What the samples taken during one stage saw (RSS in bytes)."""

    samples: int = 0
    driver_start: int = 0
    driver_peak: int = 0
    actor_peak: int = 0
    actors_total_peak: int = 0
    ray_system_peak: int = 0
    actor_peaks: dict[str, int] = field(default_factory=dict)  # by process title


def actor_name(title: str) -> str:
    """What runs in a Ray worker, from its process title less the method it is in:
    "ray::MapWorker(MapBatches(PairScorer)).submit" -> "MapWorker(MapBatches(PairScorer))";
    "IDLE" is a worker kept for reuse, holding what its last task left."""
    return ACTOR_NAME.match(title.removeprefix("ray::")).group(0) or title


def ray_worker_name(proc: psutil.Process) -> str | None:
    """actor_name of a Ray worker; None for the driver's other descendants (raylet, GCS
    server, log monitor, Ray's agents)."""
    command = proc.cmdline()
    if command and command[0].startswith("ray::"):
        name = actor_name(command[0].split()[0])
        return None if name in RAY_AGENTS else name
    if any(part.endswith("default_worker.py") for part in command):
        return "(starting)"
    return None


class Sampler(EverySeconds):
    """Every ``every_s``: the driver's RSS and each Ray worker's, charged to ``stage``, which
    the log reader moves along as the driver starts and finishes stages. Runs outside the
    driver, so measuring adds nothing to what is measured."""

    def __init__(self, driver: psutil.Process, every_s: float = SAMPLE_EVERY_S):
        super().__init__(every_s)
        self.driver = driver
        self.stage = "startup"
        self.peaks: dict[str, StagePeaks] = {}

    def sample(self) -> None:
        stage = self.stage
        driver = self.driver.memory_info().rss
        workers: dict[int, tuple[str, int]] = {}
        system = 0
        for proc, rss in tree_rss(self.driver):
            try:
                title = ray_worker_name(proc)
            except psutil.Error:
                continue  # exited between the listing and the reading
            if title is None:
                system += rss
            else:
                workers[proc.pid] = (title, rss)
        peaks = self.peaks.setdefault(stage, StagePeaks(driver_start=driver))
        peaks.samples += 1
        peaks.driver_peak = max(peaks.driver_peak, driver)
        peaks.ray_system_peak = max(peaks.ray_system_peak, system)
        peaks.actors_total_peak = max(peaks.actors_total_peak, sum(r for _, r in workers.values()))
        for title, rss in workers.values():
            peaks.actor_peak = max(peaks.actor_peak, rss)
            peaks.actor_peaks[title] = max(peaks.actor_peaks.get(title, 0), rss)


def finished_bars(text: str) -> list[tuple[str, int, float]]:
    """(description, items, seconds) of each of the driver's step bars (STEP_BARS) that ran to
    the end in ``text``. A bar draws itself at 0% when it opens and again at 100% both on its
    last update and when it closes: a bar counts once, from its 0% to its first 100%."""
    bars, opened = [], set()
    for part in re.split(r"[\r\n]", text):
        if (start := OPENED_BAR.search(part)) and start.group(1) in STEP_BARS:
            opened.add(start.group(1))
        found = FINISHED_BAR.search(part)
        if not found or found.group(1) not in opened or found.group(2) != found.group(3):
            continue
        opened.discard(found.group(1))
        hours, minutes, seconds = (int(found.group(i) or 0) for i in (4, 5, 6))
        bars.append(
            (found.group(1), int(found.group(2)), float(3600 * hours + 60 * minutes + seconds))
        )
    return bars


class LogReader(threading.Thread):
    """Copies the driver's output to a log file and tells the sampler which stage runs; keeps
    each stage's output for its progress bars."""

    def __init__(self, stream, log: Path, sampler: Sampler, started: float):
        super().__init__(daemon=True)
        self.stream, self.log, self.sampler, self.started = stream, log, sampler, started
        self.text: dict[str, list[str]] = {}

    def run(self) -> None:
        with open(self.log, "w", encoding="utf-8") as out:
            for line in self.stream:
                out.write(line)
                self.follow(line)

    def follow(self, line: str) -> None:
        if start := STAGE_STARTS.search(line):
            self.sampler.stage = start.group(1)
            print(f"  {time.perf_counter() - self.started:6.0f} s  {start.group(1)}", flush=True)
        self.text.setdefault(self.sampler.stage, []).append(line)
        if end := STAGE_ENDS.search(line):
            self.sampler.stage = f"after {end.group(1)}"


def driver_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu"}
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_measured(config: Path, log: Path) -> tuple[float, dict[str, StagePeaks], dict]:
    """`rqa run CONFIG` with the sampler and log reader beside it: (wall seconds, peaks by
    stage, driver output by stage)."""
    command = [sys.executable, "-m", "pipelines.cli", "run", str(config)]
    print("running:", " ".join(command), flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=driver_env(), text=True, errors="replace",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    sampler = Sampler(psutil.Process(proc.pid))
    reader = LogReader(proc.stdout, log, sampler, started)
    sampler.start()
    reader.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    reader.join()
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise SystemExit(f"rqa run failed ({code}); log {log}:\n" + "\n".join(tail))
    return wall, sampler.peaks, {k: "".join(v) for k, v in reader.text.items()}


def stage_records(run_dir: Path, peaks: dict[str, StagePeaks], text: dict[str, str]) -> dict:
    """Per stage, in run order: the runner's wall time and whole-tree peak (manifest), the
    sampled driver and actor peaks, the steps' progress bars and the stage's metrics."""
    records = {}
    for manifest_path in sorted(run_dir.glob("*/_manifest.json"), key=os.path.getmtime):
        manifest = json.loads(manifest_path.read_text())
        stage = manifest["stage"]
        seen = peaks.get(stage, StagePeaks())
        records[stage] = {
            "wall_s": manifest["wall_s"],
            # the runner's own figures for the driver (pipelines/runner.py, driver_traffic.py)
            "driver_peak_mb": manifest.get("driver_peak_mb"),
            "driver_cpu_s": manifest.get("driver_cpu_s"),
            "driver_received_mb": manifest.get("driver_received_mb"),
            "driver_peak_rss_mb": round(seen.driver_peak / MB, 1),
            "actor_peak_rss_mb": round(seen.actor_peak / MB, 1),
            "driver_start_rss_mb": round(seen.driver_start / MB, 1),
            "actors_total_peak_rss_mb": round(seen.actors_total_peak / MB, 1),
            "ray_system_peak_rss_mb": round(seen.ray_system_peak / MB, 1),
            "tree_peak_rss_mb": manifest["peak_rss_mb"],  # the runner's: all processes summed
            "actor_peaks_mb": {k: round(v / MB, 1) for k, v in sorted(seen.actor_peaks.items())},
            "samples": seen.samples,
            "steps": [
                {"step": name, "items": items, "seconds": seconds}
                for name, items, seconds in finished_bars(text.get(stage, ""))
            ],
            "metrics": manifest.get("metrics"),
        }
    return records


# ---------------------------------------------------------------------------------------------
# Tables


def largest_actor(record: dict) -> str:
    peaks: dict[str, float] = {}
    for title, mb in record["actor_peaks_mb"].items():
        name = actor_name(title)
        if name in RAY_AGENTS:
            continue
        peaks[name] = max(peaks.get(name, 0.0), mb)
    return max(peaks, key=peaks.get) if peaks else "–"


def steps_cell(record: dict) -> str:
    """Each step's items and seconds, summed over its runs in the stage (evaluate encodes the
    queries once per model)."""
    totals: dict[str, list[float]] = {}
    for step in record["steps"]:
        total = totals.setdefault(step["step"], [0, 0.0])
        total[0] += step["items"]
        total[1] += step["seconds"]
    return ", ".join(f"{name} {n:,} in {s:.0f}" for name, (n, s) in totals.items())


def stage_table(stages: dict) -> str:
    rows = [
        [name, r["wall_s"], r["driver_peak_rss_mb"], r["driver_cpu_s"], r["driver_received_mb"],
         r["actor_peak_rss_mb"], largest_actor(r), steps_cell(r) or "–"]
        for name, r in stages.items()
    ]  # fmt: skip
    total = sum(r["wall_s"] for r in stages.values())
    peak = max(r["driver_peak_rss_mb"] for r in stages.values())
    actor = max(r["actor_peak_rss_mb"] for r in stages.values())
    cpu = sum(r["driver_cpu_s"] or 0 for r in stages.values())
    received = max(r["driver_received_mb"] or 0 for r in stages.values())
    rows.append(["all stages", total, peak, cpu, f"max {received}", actor, "", ""])
    return table(HEADERS, rows)


def search_scaling(run_dir: Path, model: Path, counts: list[int], cpus: float) -> dict:
    """Mine's search again (every train query, its top 1000 of the corpus by exact search) on
    the run's own corpus vectors, with each number of searchers in ``counts`` (``split:
    queries``: each holds the whole index): wall seconds, the driver's CPU seconds and the
    bytes it received. In this process, which is then the driver."""
    import ray

    from pipelines.driver_traffic import received_bytes
    from pipelines.inference.search import search_table
    from pipelines.inference.settings import InferenceSettings
    from pipelines.inference.steps import encode_queries_table
    from pipelines.ray_env import ensure_ray
    from pipelines.runner import driver_cpu_s

    work, embeddings = run_dir / ".search-scaling", run_dir / "mine" / "embeddings"
    ensure_ray(num_cpus=max(1, int(max(counts) * cpus)))
    one = InferenceSettings(actors=1, cpus_per_actor=cpus, batch_size=128)
    encode_queries_table(model, run_dir / "prepare" / "queries-train", work / "queries", one)
    results = {}
    for count in counts:
        settings = InferenceSettings(actors=count, cpus_per_actor=cpus)
        cpu, received, started = driver_cpu_s(), received_bytes(), time.perf_counter()
        search_table(work / "queries", embeddings, 1000, settings, work / f"found-{count}",
                     split="queries")  # fmt: skip
        wall = time.perf_counter() - started
        results[count] = {
            "wall_s": round(wall, 1),
            "driver_cpu_s": round(driver_cpu_s() - cpu, 2),
            "driver_received_mb": round((received_bytes() - received) / MB, 3),
        }
        print(f"  search with {count} searcher(s): {wall:.0f} s", flush=True)
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    first = results[counts[0]]["wall_s"]
    for record in results.values():
        record["speedup"] = round(first / record["wall_s"], 2)
    return results


def verdicts(stages: dict, searchers: dict) -> list[str]:
    """The data plane's targets at 1M passages, each met or not."""
    received = max(r["driver_received_mb"] or 0 for r in stages.values())
    mine = stages.get("mine", {})
    share = (mine.get("driver_cpu_s") or 0) / max(mine.get("wall_s", 1), 1e-9)
    lines = [
        f"driver received at most {received:.2f} MB in a stage (target < {RECEIVED_TARGET_MB}): "
        f"{'met' if received < RECEIVED_TARGET_MB else 'MISSED'}",
        f"driver CPU in mine: {share:.1%} of its wall (target < {DRIVER_CPU_SHARE:.0%}): "
        f"{'met' if share < DRIVER_CPU_SHARE else 'MISSED'}",
    ]
    if len(searchers) > 1:
        best = searchers[max(searchers)]["speedup"]
        met = "met" if best >= SEARCH_SPEEDUP else "MISSED"
        lines.append(
            f"search speed-up with {max(searchers)} searchers: {best:.2f}x "
            f"(target >= {SEARCH_SPEEDUP}x): {met}"
        )
    return lines


def saved_results() -> list[dict]:
    """Every scale-N.json in benchmarks/results, smallest N first."""
    found = [json.loads(p.read_text()) for p in RESULTS.glob("scale-*.json")]
    return sorted(found, key=lambda r: r["passages"])


def comparison_table(results: list[dict]) -> str:
    """Wall time and driver peak of each stage at each size, and the growth from the first
    size to the last."""
    first, last = results[0], results[-1]
    headers = ["stage"]
    for r in results:
        headers += [f"wall s @{r['passages']:,}", f"driver MB @{r['passages']:,}"]
    headers += ["wall growth", "driver growth"]
    rows = []
    for stage in last["stages"]:
        row: list[object] = [stage]
        for r in results:
            s = r["stages"].get(stage, {})
            row += [s.get("wall_s", "–"), s.get("driver_peak_rss_mb", "–")]
        a, b = first["stages"].get(stage), last["stages"][stage]
        growth = a and [b["wall_s"] / max(a["wall_s"], 0.01),
                        b["driver_peak_rss_mb"] / a["driver_peak_rss_mb"]]  # fmt: skip
        row += [f"{growth[0]:.2f}x", f"{growth[1]:.2f}x"] if growth else ["–", "–"]
        rows.append(row)
    return table(headers, rows)


def print_comparison() -> None:
    results = saved_results()
    if len(results) < 2:
        return
    sizes = " vs ".join(f"{r['passages']:,}" for r in results)
    print(f"\nsaved results, {sizes} passages:\n")
    print(comparison_table(results))


# ---------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    if args.compare:
        print_comparison()
        return
    sizes = Sizes(args.passages, args.train_queries, args.eval_queries, args.unlabeled_queries,
                  args.seed)  # fmt: skip
    data, model = synthetic_data(sizes), tiny_model()
    run_dir = CACHE / f"scale-run-{args.passages}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: every stage does its work
    config = CACHE / f"scale-{args.passages}.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(args, data, model, run_dir), sort_keys=False))
    speed = {"load_average_before": list(os.getloadavg()),
             "passages_per_s_before": calibrate(data, model, args.cpus_per_actor)}  # fmt: skip
    wall, peaks, text = run_measured(config, CACHE / f"scale-{args.passages}.log")
    speed["passages_per_s_after"] = calibrate(data, model, args.cpus_per_actor)
    stages = stage_records(run_dir, peaks, text)
    counts = [int(c) for c in args.searchers.split(",") if c.strip()]
    searchers = search_scaling(run_dir, model, counts, args.cpus_per_actor) if counts else {}
    driver_peak = max(r["driver_peak_rss_mb"] for r in stages.values())
    whole_run = max(p.driver_peak for p in peaks.values()) / MB
    print(f"\n{args.passages:,} passages, {sizes.train:,} train, {sizes.eval:,} dev, "
          f"{sizes.unlabeled:,} unlabeled queries; `rqa run` {wall:.0f} s; machine speed: "
          f"{speed['passages_per_s_before']:,.0f} tiny-model passages/s before, "
          f"{speed['passages_per_s_after']:,.0f} after\n")  # fmt: skip
    print(stage_table(stages))
    if searchers:
        rows = [[n, r["wall_s"], f"{r['speedup']:.2f}x", r["driver_cpu_s"],
                 r["driver_received_mb"]] for n, r in searchers.items()]  # fmt: skip
        print("\nmine's search, top 1000 of every train query, split: queries\n")
        print(table(["searchers", "wall s", "speed-up", "driver CPU s", "driver received MB"],
                    rows))  # fmt: skip
    print("\n" + "\n".join(verdicts(stages, searchers)))
    payload = {
        "passages": args.passages,
        "train_queries": sizes.train,
        "eval_queries": sizes.eval,
        "unlabeled_queries": sizes.unlabeled,
        "bm25_negatives": args.bm25_negatives,
        "max_steps": args.max_steps,
        "rqa_run_wall_s": round(wall, 1),
        "driver_peak_rss_mb": driver_peak,
        "driver_peak_rss_mb_whole_run": round(whole_run, 1),  # with start-up and the report
        "model": "random BERT, hidden 32, 2 layers, MiniLM tokenizer",
        "machine_speed": {
            k: [round(x, 2) for x in v] if isinstance(v, list) else round(v)
            for k, v in speed.items()
        },
        "config": yaml.safe_load(config.read_text()),
        "stages": stages,
        "mine_search_by_searchers": searchers,
        "verdicts": verdicts(stages, searchers),
    }
    path = write_result("scale", payload)
    shutil.copy(path, RESULTS / f"scale-{args.passages}.json")
    if not args.keep_run:
        shutil.rmtree(run_dir, ignore_errors=True)
    print_comparison()
    print(f"scale: {args.passages} passages, driver peak RSS {driver_peak:.0f} MB")


if __name__ == "__main__":
    main()
