"""Encoding throughput: RQA's encoder against SentenceTransformer.encode on the same texts.

Same model, max length, batch size, threads and texts, timed in interleaved rounds (medians,
ratios per round); the embeddings are compared (cosine) with sentence-transformers' own. A large
matmul timed in the same rounds gives the machine's ceiling for the achieved FLOP/s. Workloads:
the SciFact corpus (title + " " + text, stripped; long texts) and the SciFact queries (short).
Usage: python benchmarks/encode.py [--docs 1000 | --full] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from common import (
    median,
    minilm_path,
    quiet_environment,
    ratio_median,
    read_scifact_corpus,
    read_scifact_queries,
    rounds,
    table,
    write_result,
)

quiet_environment()

import numpy as np  # noqa: E402
import torch  # noqa: E402

PEER = "sentence-transformers"
HEADERS = [
    "encoder",
    "precision",
    "texts/s",
    "vs ST",
    "min cosine vs ST",
    "mean cosine vs ST",
    "GFLOP/s",
    "of matmul peak",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="first N SciFact documents")
    parser.add_argument("--full", action="store_true", help="all 5,183 SciFact documents")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="model folder (default: packaged MiniLM)")
    parser.add_argument(
        "--precisions", default="fp32,bf16", help="RQA precisions to run: fp32, bf16, auto"
    )
    parser.add_argument(
        "--no-st-bf16",
        action="store_true",
        help="leave out the extra row: sentence-transformers on a bf16 copy of the model",
    )
    parser.add_argument("--no-queries", action="store_true", help="corpus workload only")
    return parser.parse_args()


def matmul_ceiling(dtype: torch.dtype, device: str) -> tuple[Callable[[], object], float]:
    """A square matmul big enough to run at the machine's peak; returns (run, flop)."""
    n = 8192 if device == "cuda" else 4096
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up: library initialisation and kernel choice
    return (lambda: a @ b), 2.0 * n**3


def model_flop(config, lengths: np.ndarray) -> float:
    """Useful FLOPs of a BERT-style encoder on texts of ``lengths`` tokens (padding excluded).

    Per layer and text of t tokens: projections 4*t*h^2, feed-forward 2*t*h*ffn, attention
    scores and weighted sum 2*t^2*h multiply-adds; a multiply-add is 2 FLOPs.
    """
    h, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    t = lengths.astype(np.float64)
    macs = layers * (t * (4 * h * h + 2 * h * ffn) + 2 * t * t * h)
    return float(2 * macs.sum())


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def as_numpy(result: object) -> np.ndarray:
    if isinstance(result, torch.Tensor):
        return result.float().cpu().numpy()
    return np.asarray(result, dtype=np.float32)


def measure(
    label: str,
    texts: list[str],
    encoders: dict[str, Callable[[], object]],
    ceilings: dict[str, tuple[Callable[[], object], float]],
    flop: float,
    repeats: int,
    sync: Callable[[], None] | None,
) -> dict:
    """Time ``encoders`` and the matmuls in interleaved rounds; compare the vectors with ST's."""
    print(f"\n{label}: {len(texts)} texts", flush=True)
    runs = dict(encoders)
    runs.update({f"matmul {name}": run for name, (run, _) in ceilings.items()})
    vectors: dict[str, np.ndarray] = {}

    def keep(name: str, result: object) -> None:
        if name in encoders and name not in vectors:
            vectors[name] = as_numpy(result)

    seconds = rounds(runs, repeats, sync, keep)
    peak = {k: mm_flop / median(seconds[f"matmul {k}"]) for k, (_, mm_flop) in ceilings.items()}
    records, rows = [], []
    for name in encoders:
        precision = "bf16" if "bf16" in name else "fp32"
        achieved = flop / median(seconds[name])
        cos = cosines(vectors[name], vectors[PEER])
        record = {
            "encoder": name,
            "precision": precision,
            "seconds": seconds[name],
            "texts_per_s": len(texts) / median(seconds[name]),
            "speedup_vs_st": ratio_median(seconds, name, PEER),
            "cosine_vs_st_min": float(cos.min()),
            "cosine_vs_st_mean": float(cos.mean()),
            "achieved_gflop_s": achieved / 1e9,
            "fraction_of_matmul_peak": achieved / peak[precision],
        }
        records.append(record)
        rows.append(
            [
                name,
                precision,
                record["texts_per_s"],
                f"{record['speedup_vs_st']:.2f}x",
                f"{record['cosine_vs_st_min']:.5f}",
                f"{record['cosine_vs_st_mean']:.6f}",
                record["achieved_gflop_s"],
                f"{100 * record['fraction_of_matmul_peak']:.0f}%",
            ]
        )
    print()
    print(table(HEADERS, rows))
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items()))
    return {
        "texts": len(texts),
        "model_gflop": flop / 1e9,
        "matmul_gflop_s": {k: v / 1e9 for k, v in peak.items()},
        "matmul_seconds": {k: seconds[f"matmul {k}"] for k in ceilings},
        "results": records,
    }


def main() -> None:
    args = parse_args()
    from sentence_transformers import SentenceTransformer

    from retrieval.encoding import encode_passages, encode_queries
    from retrieval.models import DualEncoder
    from retrieval.precision import bf16_is_fast, resolve_precision

    torch.set_num_threads(args.threads)
    device = args.device
    sync = torch.cuda.synchronize if device == "cuda" else None
    path = args.model or minilm_path()
    _, titles, bodies = read_scifact_corpus(None if args.full else args.docs)
    passages = [f"{t} {b}".strip() for t, b in zip(titles, bodies)]
    queries = read_scifact_queries()

    st = SentenceTransformer(path, device=device)
    st_bf16 = None if args.no_st_bf16 else SentenceTransformer(path, device=device)
    if st_bf16 is not None:
        st_bf16.to(torch.bfloat16)
    rqa = DualEncoder.from_pretrained(path).to(device)
    if not st.max_seq_length == rqa.settings.passage_max_len == rqa.settings.query_max_len:
        raise SystemExit(
            f"max lengths differ: ST {st.max_seq_length}, RQA passages "
            f"{rqa.settings.passage_max_len} / queries {rqa.settings.query_max_len}"
        )
    max_len = st.max_seq_length
    precisions = list(
        dict.fromkeys(resolve_precision(p, device) for p in args.precisions.split(","))
    )
    ceilings = {"fp32": matmul_ceiling(torch.float32, device)}
    if "bf16" in precisions or st_bf16 is not None:
        ceilings["bf16"] = matmul_ceiling(torch.bfloat16, device)
    batch = args.batch_size
    print(
        f"batch {batch}, max length {max_len}, {args.threads} threads, {device}; "
        f"bf16 native: {bf16_is_fast(device)}"
    )

    def st_runs(texts: list[str]) -> dict[str, Callable[[], object]]:
        runs = {
            PEER: lambda: st.encode(
                texts, batch_size=batch, convert_to_numpy=True, normalize_embeddings=True
            )
        }
        if st_bf16 is not None:
            runs[f"{PEER} bf16"] = lambda: st_bf16.encode(
                texts, batch_size=batch, convert_to_tensor=True, normalize_embeddings=True
            )
        return runs

    def flop_of(texts: list[str]) -> tuple[float, float]:
        ids = rqa.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        return model_flop(rqa.query_model.config, lengths), float(lengths.mean())

    workloads = {}
    runs = st_runs(passages)
    for p in precisions:
        runs[f"rqa {p}"] = lambda p=p: encode_passages(
            rqa, titles, bodies, batch, show_progress=False, precision=p
        )
    workloads["corpus"] = (passages, runs)
    if not args.no_queries:
        runs = st_runs(queries)
        for p in precisions:
            runs[f"rqa {p}"] = lambda p=p: encode_queries(
                rqa, queries, batch, show_progress=False, precision=p
            )
        workloads["queries"] = (queries, runs)

    # warm-up: first calls pay for library initialisation and memory allocation
    st.encode(passages[:8])
    if st_bf16 is not None:
        st_bf16.encode(passages[:8])
    for p in precisions:
        encode_passages(rqa, titles[:8], bodies[:8], show_progress=False, precision=p)

    results = {}
    for name, (texts, runs) in workloads.items():
        flop, mean_tokens = flop_of(texts)
        label = f"SciFact {name}, mean {mean_tokens:.0f} tokens"
        results[name] = measure(label, texts, runs, ceilings, flop, args.repeats, sync)
        results[name]["mean_tokens"] = mean_tokens
    write_result(
        f"encode-{device}" + ("-full" if args.full else ""),
        {
            "docs": len(passages),
            "max_len": max_len,
            "batch_size": batch,
            "threads": args.threads,
            "device": device,
            "repeats": args.repeats,
            "model": path,
            "workloads": results,
        },
    )


if __name__ == "__main__":
    main()
