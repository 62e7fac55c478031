"""`rqa search`: retrieve top-k passages for a queries table into a candidates table."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.commands.inputs import add_precision_arg, load_model
from retrieval.indexing import FaissIndex
from retrieval.metrics import write_trec_run
from retrieval.retriever import read_queries, search_queries, to_candidates, to_run
from retrieval.tables.schemas import CANDIDATES
from retrieval.tables.store import write_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="search an index with a queries table")
    parser.add_argument("--model", required=True, help="local model folder or HF model id")
    parser.add_argument("--index", type=Path, required=True, help="index folder (`rqa index`)")
    parser.add_argument("--queries", type=Path, required=True, help="queries table folder")
    parser.add_argument("--out", type=Path, required=True, help="candidates table folder")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--run-file", type=Path, help="also write a TREC run file")
    add_precision_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    index = FaissIndex.load(args.index)  # missing inputs fail before the model is loaded
    qids, texts = read_queries(args.queries)
    model = load_model(args.model)
    scores, pids = search_queries(model, qids, texts, index, args.k, precision=args.precision)
    write_table(args.out, to_candidates(qids, scores, pids), CANDIDATES)
    if args.run_file:
        write_trec_run(to_run(qids, scores, pids), args.run_file)
    print(f"wrote top-{args.k} candidates of {len(qids)} queries to {args.out}")
    return 0
