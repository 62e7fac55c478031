"""`rqa encode`: turn a corpus table into an embeddings table with a dual encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.commands.inputs import add_precision_arg, load_model
from retrieval.encoding import encode_corpus
from retrieval.tables.store import read_manifest


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encode", help="encode a corpus table into embeddings")
    parser.add_argument("--model", required=True, help="local model folder or HF model id")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus table folder")
    parser.add_argument("--out", type=Path, required=True, help="embeddings table folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    add_precision_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    read_manifest(args.corpus)  # a missing corpus fails before the model is loaded
    model = load_model(args.model)
    manifest = encode_corpus(
        model, args.corpus, args.out, args.batch_size, args.dtype, precision=args.precision
    )
    print(f"wrote {manifest['rows']} embeddings to {args.out}")
    return 0
