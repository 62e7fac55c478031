"""`rqa download beir --name scifact --out data`: fetch a public BEIR dataset folder once.

The download itself (checksum, safe unzip) is retrieval/tables/download.py; `rqa prepare beir
--name` shares these options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.tables.download import download_beir


def add_checksum_args(parser: argparse.ArgumentParser) -> None:
    """--md5 / --sha256 / --url: what the downloaded zip must match, and a mirror to get it from."""
    parser.add_argument("--md5", help="expected md5 of the zip (default: BEIR's published md5)")
    parser.add_argument("--sha256", help="expected sha256 of the zip, instead of the md5")
    parser.add_argument("--url", help="fetch the zip from here (a mirror) instead of BEIR's server")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("download", help="download a public dataset folder once")
    sources = parser.add_subparsers(dest="source", required=True)
    beir = sources.add_parser("beir", help="a BEIR dataset zip, checked and unzipped into --out")
    beir.add_argument("--name", required=True, help="BEIR dataset name, e.g. scifact")
    beir.add_argument("--out", type=Path, required=True, help="parent folder (gets --out/NAME)")
    add_checksum_args(beir)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folder = download_beir(args.name, args.out, md5=args.md5, sha256=args.sha256, url=args.url)
    print(folder)  # the last line is the folder, for scripts: DIR=$(rqa download beir ...)
    return 0
