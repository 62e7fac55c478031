"""`rqa prepare {beir,msmarco,nq,rocketqa}`: raw dataset files -> sharded Parquet tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.commands.download import add_checksum_args
from retrieval.errors import ConfigError
from retrieval.tables.download import download_beir
from retrieval.tables.readers import prepare_beir, prepare_msmarco, prepare_nq


def _split_paths(values: list[str] | None, option: str) -> dict[str, Path]:
    """Parse repeated ``SPLIT=PATH`` options."""
    out = {}
    for value in values or []:
        split, sep, path = value.partition("=")
        if not sep or not split or not path:
            raise ConfigError(f"{option} expects SPLIT=PATH, got {value!r}")
        out[split] = Path(path)
    return out


def _policies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder of tables")
    parser.add_argument("--on-duplicate", choices=("error", "keep_first"), default="error")
    parser.add_argument("--on-unknown-id", choices=("error", "skip"), default="error")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="read a raw dataset into tables")
    formats = parser.add_subparsers(dest="format", required=True)
    beir = formats.add_parser("beir", help="a BEIR folder, or --name to download one")
    beir.add_argument("--dir", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    beir.add_argument(
        "--name", help="download this BEIR dataset (e.g. scifact) into OUT/../raw/NAME first"
    )
    beir.add_argument("--splits", nargs="+", help="qrels splits (default: all)")
    add_checksum_args(beir)
    _policies(beir)
    marco = formats.add_parser("msmarco", help="MS MARCO passage files")
    marco.add_argument("--collection", type=Path, help="collection.tsv")
    marco.add_argument("--queries", action="append", help="SPLIT=queries.SPLIT.tsv (repeat)")
    marco.add_argument("--qrels", action="append", help="SPLIT=qrels.SPLIT.tsv (repeat)")
    marco.add_argument("--triples", type=Path, help="triples.train.small.tsv")
    _policies(marco)
    nq = formats.add_parser("nq", help="Natural Questions in DPR formats")
    nq.add_argument("--passages", type=Path, help="psgs_w100.tsv")
    nq.add_argument("--qa", action="append", help="SPLIT=nq-SPLIT.qa.csv (repeat)")
    nq.add_argument("--biencoder", action="append", help="SPLIT=biencoder-nq-SPLIT.json (repeat)")
    _policies(nq)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policies = {"on_duplicate": args.on_duplicate, "on_unknown_id": args.on_unknown_id}
    if args.format == "beir":
        if bool(args.dir) == bool(args.name):
            raise ConfigError("prepare beir needs one of --dir or --name")
        folder = args.dir or download_beir(
            args.name, args.out.parent / "raw", md5=args.md5, sha256=args.sha256, url=args.url
        )
        manifests = prepare_beir(folder, args.out, splits=args.splits, **policies)
    elif args.format == "msmarco":
        queries = _split_paths(args.queries, "--queries")
        qrels = _split_paths(args.qrels, "--qrels")
        manifests = prepare_msmarco(
            args.collection, queries, qrels, args.out, triples=args.triples, **policies
        )
    else:
        qa = _split_paths(args.qa, "--qa")
        biencoder = _split_paths(args.biencoder, "--biencoder")
        manifests = prepare_nq(
            args.out, passages=args.passages, qa=qa, biencoder=biencoder, **policies
        )
    for name, manifest in sorted(manifests.items()):
        print(f"{name:<24} {manifest['rows']:>10,} rows")
    return 0
