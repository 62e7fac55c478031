"""FAISS index benchmark: build time, queries/s and recall@k against exact search.

Indexes are RQA FaissIndex objects (Flat, HNSW, IVF-PQ by factory string). The peer is raw
faiss searching the same index object, timed in the same interleaved rounds: the gap is what
RQA adds on top (tie handling at the k-th place, "higher is better" scores). Corpora: SciFact
embedded with MiniLM by RQA (real), and a synthetic clustered corpus of --size x 384 vectors.
Usage: python benchmarks/search.py [--datasets scifact,synthetic] [--size 1000000]
"""

from __future__ import annotations

import argparse
import math
import time

from common import (
    CACHE,
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

import faiss  # noqa: E402
import numpy as np  # noqa: E402

HEADERS = [
    "corpus",
    "index",
    "search",
    "build s",
    "RQA q/s",
    "faiss q/s",
    "RQA vs faiss",
    "recall@k",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="scifact,synthetic")
    parser.add_argument("--size", type=int, default=1_000_000, help="synthetic corpus rows")
    parser.add_argument("--dim", type=int, default=384, help="synthetic vector width")
    parser.add_argument("--queries", type=int, default=1000, help="synthetic queries")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument(
        "--indexes",
        default="Flat,HNSW,IVF-PQ,IVF-PQ-refine",
        help="which of Flat, HNSW, IVF-PQ, IVF-PQ-refine to build",
    )
    parser.add_argument("--train-sample", type=int, default=200_000, help="IVF-PQ training rows")
    parser.add_argument("--threads", type=int, default=faiss.omp_get_max_threads())
    return parser.parse_args()


def clustered(n: int, dim: int, centers: np.ndarray, seed: int, chunk: int = 100_000):
    """Unit vectors around random unit centres (cosine to the centre about 0.7).

    Isotropic random vectors would have no neighbourhood structure for HNSW or IVF to find;
    clusters make the synthetic corpus behave more like real embeddings.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        labels = rng.integers(len(centers), size=rows)
        noise = rng.standard_normal((rows, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        x = centers[labels] + noise
        out[start : start + rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synthetic(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((max(n // 1000, 10), dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return clustered(n, dim, centers, seed=1), clustered(queries, dim, centers, seed=2)


def scifact_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """SciFact corpus and query vectors from RQA with MiniLM (cached under results/cache)."""
    path = CACHE / "scifact-minilm.npz"
    if path.is_file():
        saved = np.load(path)
        return saved["corpus"], saved["queries"]
    from retrieval.encoding import encode_passages, encode_queries
    from retrieval.models import DualEncoder

    model = DualEncoder.from_pretrained(minilm_path())
    _, titles, texts = read_scifact_corpus()
    print(f"encoding {len(texts)} SciFact passages (once; cached in {path.name})", flush=True)
    corpus = encode_passages(model, titles, texts, precision="auto")
    queries = encode_queries(model, read_scifact_queries(), precision="auto")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, corpus=corpus, queries=queries)
    return corpus, queries


def index_plans(n: int, wanted: list[str]) -> list[tuple[str, str, list[dict]]]:
    """(name, factory string, search settings) per index type; IVF lists ~ sqrt(n)."""
    nlist = 2 ** max(4, round(math.log2(math.sqrt(n))))
    plans = {
        "Flat": ("Flat", [{}]),
        "HNSW": ("HNSW32", [{"efSearch": 128}, {"efSearch": 512}]),
        # 48 sub-quantizers of 8 dims, 48 bytes a vector; "np" skips polysemous training
        "IVF-PQ": (f"IVF{nlist},PQ48np", [{"nprobe": 8}, {"nprobe": 32}]),
        # the same, re-ranking k_factor * k PQ candidates by exact inner product (keeps vectors)
        "IVF-PQ-refine": (f"IVF{nlist},PQ48np,RFlat", [{"nprobe": 32, "k_factor_rf": 4}]),
    }
    return [(name, *plans[name]) for name in wanted]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k that the index returned."""
    hits = [len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth)]
    return float(np.mean(hits) / truth.shape[1])


def time_search(index, queries: np.ndarray, k: int, repeats: int) -> tuple[dict, dict]:
    """RQA's search_ids and raw faiss on the same index, in interleaved rounds."""
    runs = {
        "rqa": lambda: index.search_ids(queries, k),
        "faiss": lambda: index.index.search(queries, k),
    }
    found: dict = {}
    seconds = rounds(runs, repeats, on_result=lambda name, result: found.setdefault(name, result))
    return seconds, found


def bench_corpus(label: str, corpus: np.ndarray, queries: np.ndarray, args) -> list[dict]:
    from retrieval.indexing import FaissIndex

    k = args.k
    print(f"\n{label}: {len(corpus):,} x {corpus.shape[1]}, {len(queries)} queries, k={k}")
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    _, truth = exact.search(queries, k)
    del exact
    pids = [str(i) for i in range(len(corpus))]
    records = []
    for name, factory, settings in index_plans(len(corpus), args.indexes.split(",")):
        started = time.perf_counter()
        index = FaissIndex.build(corpus, pids, factory, train_sample=args.train_sample)
        build_s = time.perf_counter() - started
        print(f"  built {factory} in {build_s:.1f} s", flush=True)
        for params in settings:
            index.set_search_params(**params)
            seconds, found = time_search(index, queries, k, args.repeats)
            records.append(
                {
                    "corpus": label,
                    "rows": len(corpus),
                    "type": name,
                    "index": factory,
                    "search_params": params,
                    "build_s": build_s,
                    "rqa_queries_per_s": len(queries) / median(seconds["rqa"]),
                    "faiss_queries_per_s": len(queries) / median(seconds["faiss"]),
                    "rqa_vs_faiss": ratio_median(seconds, "rqa", "faiss"),
                    f"recall@{k}": recall(found["rqa"][1], truth),
                    f"faiss_recall@{k}": recall(found["faiss"][1], truth),
                    "seconds": seconds,
                }
            )
    return records


def main() -> None:
    args = parse_args()
    faiss.omp_set_num_threads(args.threads)
    records = []
    for dataset in args.datasets.split(","):
        if dataset == "scifact":
            corpus, queries = scifact_embeddings()
            records += bench_corpus("SciFact (MiniLM)", corpus, queries, args)
        elif dataset == "synthetic":
            corpus, queries = synthetic(args.size, args.dim, args.queries)
            records += bench_corpus(f"synthetic {args.size:,}", corpus, queries, args)
            del corpus
        else:
            raise SystemExit(f"unknown dataset {dataset!r} (scifact, synthetic)")
    rows = [
        [
            r["corpus"],
            r["index"],
            " ".join(f"{k}={v}" for k, v in r["search_params"].items()) or "exact",
            r["build_s"],
            r["rqa_queries_per_s"],
            r["faiss_queries_per_s"],
            f"{r['rqa_vs_faiss']:.2f}x",
            f"{r[f'recall@{args.k}']:.3f}",
        ]
        for r in records
    ]
    print()
    print(table(HEADERS, rows))
    write_result(
        "search",
        {
            "k": args.k,
            "threads": args.threads,
            "repeats": args.repeats,
            "synthetic_size": args.size,
            "train_sample": args.train_sample,
            "results": records,
        },
    )


if __name__ == "__main__":
    main()
