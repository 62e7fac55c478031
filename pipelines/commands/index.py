"""`rqa index`: build and save a faiss index over an embeddings table."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.indexing import index_from_table
from retrieval.tables.store import atomic_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="build a faiss index from embeddings")
    parser.add_argument("--embeddings", type=Path, required=True, help="embeddings table folder")
    parser.add_argument("--out", type=Path, required=True, help="index folder")
    parser.add_argument("--factory", default="Flat", help="faiss index_factory string")
    parser.add_argument("--metric", choices=("ip", "l2"), default="ip")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    index = index_from_table(args.embeddings, factory=args.factory, metric=args.metric)
    with atomic_dir(args.out) as tmp:
        index.save(tmp)
    print(f"indexed {len(index)} vectors ({args.factory}, {args.metric}) into {args.out}")
    return 0
