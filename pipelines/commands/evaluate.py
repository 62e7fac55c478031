"""`rqa evaluate`: score a retriever on a BEIR folder, MS MARCO-style files or NQ answers.

Raw files are read into temporary tables first, so bad input fails before any encoding.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from pipelines.commands.inputs import (
    add_input_args,
    add_precision_arg,
    load_model,
    prepare_inputs,
)
from retrieval.evaluator import DEFAULT_METRICS, evaluate_retriever
from retrieval.metrics import parse_metric, write_trec_run
from retrieval.tables.store import write_json_atomic

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a dual encoder (nDCG, MRR, Recall)")
    parser.add_argument("--model", required=True, help="local model folder or HF model id")
    add_input_args(parser)
    parser.add_argument("--metrics", nargs="+", default=[], help="extra metrics, e.g. map ndcg@100")
    parser.add_argument("--k", type=int, default=100, help="retrieval depth (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, help="passage max length in tokens (model default)")
    parser.add_argument("--factory", default="Flat", help="faiss index_factory string")
    parser.add_argument("--output", type=Path, help="write metrics JSON here")
    parser.add_argument("--run-file", type=Path, help="write the run as a TREC run file here")
    add_precision_arg(parser)
    parser.set_defaults(run=run)


def format_table(title: str, metrics: dict[str, float]) -> str:
    """A two-column text table a person can read in a terminal or paste into Markdown."""
    width = max(len(name) for name in metrics)
    lines = [f"| {'metric':<{width}} | {'value':>7} |", f"|{'-' * (width + 2)}|{'-' * 9}|"]
    lines += [f"| {name:<{width}} | {value:7.4f} |" for name, value in metrics.items()]
    return "\n".join([title, *lines])


def run(args: argparse.Namespace) -> int:
    metrics = tuple(dict.fromkeys([*DEFAULT_METRICS, *args.metrics]))
    for name in metrics:  # a misspelt metric fails now, not after encoding the corpus
        parse_metric(name)
    with tempfile.TemporaryDirectory(prefix="rqa-tables-") as tmp:
        tables_dir, split = prepare_inputs(args, Path(tmp) / "tables")
        overrides = {"passage_max_len": args.max_len} if args.max_len else {}
        model = load_model(args.model, **overrides)
        logger.info("evaluating %s on %s split %s", args.model, tables_dir, split)
        result = evaluate_retriever(
            model,
            tables_dir,
            split,
            metrics,
            k=args.k,
            batch_size=args.batch_size,
            factory=args.factory,
            precision=args.precision,
        )
    print(format_table(f"{args.model} on {split}", result.metrics))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            **result.metrics,
            "model": str(args.model),
            "split": split,
            "precision": args.precision,
            "timings_s": result.timings_s,
        }
        write_json_atomic(args.output, payload)
    if args.run_file:
        write_trec_run(result.run, args.run_file)
    return 0
