"""Rebuild the small real-data excerpts in tests/data from the full files in ../shared.

The default test suite reads only these excerpts, so a clone anywhere passes without ../shared;
tests that need a full dataset skip without it (tests/conftest.py). Run from the repo root:
    python tests/data/make_excerpts.py [--shared ../shared]
Deterministic: the same full files give the same excerpts. Sources and licences: README.md here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN_QUERIES, DEV_QUERIES, OTHER_DOCS = 150, 50, 250  # SciFact
STSB_TRAIN, STSB_DEV = 400, 250  # sentence pairs, plus every dev pair with a bare quote


def qrels(path: Path) -> tuple[str, list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:] if line.strip()]


def first_queries(judgments: list[list[str]], count: int) -> list[list[str]]:
    """The judgments of the first ``count`` queries, in file order."""
    chosen: list[str] = []
    for qid, _, _ in judgments:
        if qid not in chosen:
            chosen.append(qid)
    keep = set(chosen[:count])
    return [j for j in judgments if j[0] in keep]


def scifact(source: Path, dest: Path) -> None:
    """The first 150 train and 50 dev queries with every passage judged for them, plus the
    first 250 other passages, in corpus order. The corpus is saved as corpus-excerpt.jsonl:
    tests/conftest.py lays the files out as a BEIR folder in a temporary directory."""
    splits = {}
    for split, count in (("train", TRAIN_QUERIES), ("dev", DEV_QUERIES)):
        header, judgments = qrels(source / "qrels" / f"{split}.tsv")
        splits[split] = (header, first_queries(judgments, count))
    judged = {pid for _, rows in splits.values() for _, pid, _ in rows}
    others, corpus = OTHER_DOCS, []
    for line in (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        pid = json.loads(line)["_id"]
        if pid in judged or others > 0:
            corpus.append(line)
            others -= pid not in judged
    qids = {qid for _, rows in splits.values() for qid, _, _ in rows}
    queries = [
        line
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in qids
    ]
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    (dest / "corpus-excerpt.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    for split, (header, rows) in splits.items():
        text = "\n".join([header, *("\t".join(r) for r in rows)]) + "\n"
        (dest / "qrels" / f"{split}.tsv").write_text(text)
    print(f"scifact: {len(corpus)} passages, {len(queries)} queries")


def stsb(source: Path, dest: Path) -> None:
    """The header and the first pairs of each split, byte for byte (CRLF line ends kept); dev
    also keeps every later pair whose sentences hold a bare quote character."""
    dest.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", STSB_TRAIN), ("dev", STSB_DEV)):
        lines = (source / f"{split}.tsv").read_bytes().splitlines(keepends=True)
        kept = [
            line for i, line in enumerate(lines) if i <= count or (split == "dev" and b'"' in line)
        ]
        (dest / f"{split}.tsv").write_bytes(b"".join(kept))
        print(f"stsb {split}: {len(kept) - 1} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared")
    args = parser.parse_args()
    scifact(args.shared / "datasets" / "scifact", HERE / "scifact")
    stsb(args.shared / "datasets" / "stsb", HERE / "stsb")


if __name__ == "__main__":
    main()
