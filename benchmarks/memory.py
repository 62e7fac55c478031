"""Peak memory of `rqa encode` as the corpus grows: it must stay flat (bounded by shard size).

Synthetic corpus tables (short random texts, 10,000-row shards) of each --sizes are encoded by
`rqa encode` in a subprocess with a tiny random BERT (hidden 32, 2 layers, MiniLM's tokenizer),
so a million passages take minutes; peak RSS comes from getrusage of that subprocess alone.
The peer, measured on the same corpora, is the usual in-memory way: read the whole table and
call SentenceTransformer.encode on all texts at once.
Usage: python benchmarks/memory.py [--sizes 10000,100000,1000000] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, REPO, minilm_path, quiet_environment, save_tiny_bert, table, write_result

quiet_environment()

import numpy as np  # noqa: E402

SHARD_ROWS = 10_000
# Runs one command and prints the peak RSS of it and its children (KiB on Linux).
LAUNCHER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'rc': rc, 'peak_rss_kib': peak}))\n"
)
HEADERS = [
    "passages",
    "rqa encode peak RSS MiB",
    "rqa encode s",
    "rqa passages/s",
    "peer peak RSS MiB",
    "peer s",
    "peer passages/s",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes (rows)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-peer", action="store_true", help="measure `rqa encode` only")
    parser.add_argument(
        "--peer-encode", nargs=3, metavar=("CORPUS", "MODEL", "OUT"), help=argparse.SUPPRESS
    )
    return parser.parse_args()


def tiny_model() -> Path:
    """A random 2-layer BERT (hidden 32) with MiniLM's tokenizer, saved as RQA + ST model."""
    folder = CACHE / "tiny-bert"
    if (folder / "rqa_dual_encoder.json").is_file():
        return folder
    from retrieval.models import DualEncoder

    raw = save_tiny_bert(CACHE / "tiny-bert-raw")
    DualEncoder.from_pretrained(raw, passage_max_len=256, query_max_len=64).save(folder)
    return folder


def words() -> np.ndarray:
    """Whole English-looking words from MiniLM's vocabulary."""
    vocab = (Path(minilm_path()) / "vocab.txt").read_text(encoding="utf-8").split()
    return np.array([w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3])


def synthetic_corpus(rows: int) -> Path:
    """A corpus table of ``rows`` random passages (title 2-8 words, text 10-60 words)."""
    from retrieval.tables import CORPUS, write_table

    folder = CACHE / f"corpus-{rows}"
    if (folder / "_manifest.json").is_file():
        return folder
    vocab = words()
    rng = np.random.default_rng(rows)

    def passages():
        for start in range(0, rows, SHARD_ROWS):
            count = min(SHARD_ROWS, rows - start)
            title_len = rng.integers(2, 9, size=count)
            text_len = rng.integers(10, 61, size=count)
            picks = vocab[rng.integers(len(vocab), size=int((title_len + text_len).sum()))]
            at = 0
            for i in range(count):
                title = " ".join(picks[at : at + title_len[i]])
                at += title_len[i]
                text = " ".join(picks[at : at + text_len[i]])
                at += text_len[i]
                yield {"pid": f"p{start + i}", "title": title.capitalize(), "text": text + "."}

    print(f"writing a synthetic corpus of {rows:,} passages", flush=True)
    write_table(folder, passages(), CORPUS, shard_rows=SHARD_ROWS)
    return folder


def measured(command: list[str], log: Path) -> dict:
    """Run ``command`` under the launcher: its wall time and peak RSS (MiB)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *command],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            cwd=REPO,
        )
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"{' '.join(command)} failed ({report['rc']}):\n" + "\n".join(tail))
    return {"seconds": seconds, "peak_rss_mib": report["peak_rss_kib"] / 1024}


def rqa_command() -> list[str]:
    script = Path(sys.executable).parent / "rqa"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipelines.cli"]


def peer_encode(corpus: str, model: str, out: str) -> None:
    """The peer: the whole corpus in memory, one SentenceTransformer.encode call, one save."""
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    table = pq.read_table(corpus, columns=["title", "text"])
    texts = [
        f"{a} {b}".strip() if a else b.strip()
        for a, b in zip(table["title"].to_pylist(), table["text"].to_pylist())
    ]
    del table
    vectors = SentenceTransformer(model, device="cpu").encode(texts, batch_size=32)
    np.save(out, vectors)


def main() -> None:
    args = parse_args()
    if args.peer_encode:
        peer_encode(*args.peer_encode)
        return
    model = tiny_model()
    sizes = [int(s) for s in args.sizes.split(",")]
    records = []
    for rows in sizes:
        corpus = synthetic_corpus(rows)
        out = CACHE / f"embeddings-{rows}"
        command = [*rqa_command(), "encode", "--model", str(model), "--corpus", str(corpus)]
        command += ["--out", str(out), "--batch-size", str(args.batch_size)]
        print(f"rqa encode, {rows:,} passages", flush=True)
        record = {"rows": rows, "rqa": measured(command, CACHE / f"rqa-encode-{rows}.log")}
        if not args.no_peer:
            print(f"peer (ST in memory), {rows:,} passages", flush=True)
            command = [sys.executable, __file__, "--peer-encode", str(corpus), str(model)]
            command.append(str(CACHE / f"peer-{rows}.npy"))
            record["peer"] = measured(command, CACHE / f"peer-{rows}.log")
        records.append(record)
        print(f"  {json.dumps(record)}", flush=True)

    rows = []
    for r in records:
        peer = r.get("peer")
        rows.append(
            [
                f"{r['rows']:,}",
                r["rqa"]["peak_rss_mib"],
                r["rqa"]["seconds"],
                r["rows"] / r["rqa"]["seconds"],
                peer["peak_rss_mib"] if peer else "-",
                peer["seconds"] if peer else "-",
                r["rows"] / peer["seconds"] if peer else "-",
            ]
        )
    print()
    print(table(HEADERS, rows))
    growth = None
    if len(records) > 1:
        first, last = records[-2]["rqa"]["peak_rss_mib"], records[-1]["rqa"]["peak_rss_mib"]
        growth = last / first - 1
        print(
            f"rqa encode peak RSS from {records[-2]['rows']:,} to {records[-1]['rows']:,} "
            f"passages: {100 * growth:+.1f}%"
        )
    write_result(
        "memory",
        {
            "shard_rows": SHARD_ROWS,
            "batch_size": args.batch_size,
            "model": "random BERT, hidden 32, 2 layers, MiniLM tokenizer",
            "rss_growth_last_two_sizes": growth,
            "results": records,
        },
    )


if __name__ == "__main__":
    main()
