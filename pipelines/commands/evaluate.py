"""`rqa evaluate`: score a retriever on a BEIR folder, MS MARCO-style files or NQ answers, or
score any TREC run file against qrels (``--run``, as trec_eval does, with the same numbers).

Raw files are read into temporary tables first, so bad input fails before any encoding.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

from pipelines.commands.inputs import (
    add_input_args,
    add_precision_arg,
    load_model,
    prepare_inputs,
)
from retrieval.errors import ConfigError, MissingInputError
from retrieval.evaluator import DEFAULT_METRICS, evaluate_retriever
from retrieval.metrics import evaluate, parse_metric, per_query, read_trec_run, write_trec_run
from retrieval.metrics.evaluate import Qrels, Run
from retrieval.metrics.significance import PairedComparison, compare_per_query
from retrieval.tables.errors import DataError
from retrieval.tables.labels import read_qrels
from retrieval.tables.readers.beir import read_beir_qrels
from retrieval.tables.readers.msmarco import read_msmarco_qrels
from retrieval.tables.store import write_json_atomic

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a dual encoder, or score a TREC run file (nDCG, MRR, Recall)"
    )
    scored = parser.add_mutually_exclusive_group(required=True)
    scored.add_argument("--model", help="local model folder or HF model id")
    scored.add_argument(
        "--run",
        dest="trec_run",
        type=Path,
        help="score this TREC run file against --qrels FILE, or the --split qrels of --tables "
        "or --beir; a judged query missing from the run scores 0 (trec_eval -c), and a doc "
        "whose id is its query's id is dropped (as BEIR and --model do)",
    )
    add_input_args(parser)
    parser.add_argument("--metrics", nargs="+", default=[], help="extra metrics, e.g. map ndcg@100")
    parser.add_argument("--k", type=int, default=100, help="retrieval depth (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, help="passage max length in tokens (model default)")
    parser.add_argument("--factory", default="Flat", help="faiss index_factory string")
    parser.add_argument("--output", type=Path, help="write metrics JSON here")
    parser.add_argument("--run-file", type=Path, help="write the run as a TREC run file here")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN",
        help="with --run: compare these TREC run files with it, query by query (paired "
        "randomization test and 95%% bootstrap interval of the difference): is a gain noise?",
    )
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
    if args.compare and not args.trec_run:
        raise ConfigError("--compare compares run files with the --run file: give --run too")
    if args.trec_run:
        return score_run_file(args, metrics)
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


def score_run_file(args: argparse.Namespace, metrics: tuple[str, ...]) -> int:
    """``--run``: the metrics of a TREC run file against the qrels the options name."""
    if args.run_file or args.answers:
        raise ConfigError("--run scores a run file against qrels: drop --run-file and --answers")
    if not args.trec_run.is_file():
        raise MissingInputError(f"--run {args.trec_run}: file not found")
    qrels, source = run_qrels(args)
    retrieved = read_trec_run(args.trec_run)
    judged = {q for q, rels in qrels.items() if any(rel > 0 for rel in rels.values())}
    if not judged:
        raise DataError(source, "no query has a document with relevance > 0")
    missing = len(judged - retrieved.keys())
    if missing == len(judged):
        raise DataError(
            args.trec_run, f"no query of the run is judged in {source} (wrong --split?)"
        )
    if missing:
        logger.warning(
            "%d of %d judged queries are not in the run: they score 0", missing, len(judged)
        )
    result = evaluate(qrels, retrieved, metrics)
    print(format_table(f"{args.trec_run} against {source}", result))
    comparisons = compare_runs(qrels, retrieved, args.compare, metrics)
    if comparisons:
        print(format_comparisons(args.trec_run, comparisons))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {**result, "run": str(args.trec_run), "qrels": source, "queries": len(judged)}
        if comparisons:
            payload["compared"] = {str(path): [asdict(row) for row in rows]
                                   for path, rows in comparisons.items()}  # fmt: skip
        write_json_atomic(args.output, payload)
    return 0


def compare_runs(
    qrels: Qrels, baseline: Run, others: list[Path], metrics: list[str]
) -> dict[Path, list[PairedComparison]]:
    """Each of ``others`` against ``baseline`` on every metric, over the same judged queries."""
    for path in others:  # a missing file fails before any resampling
        if not path.is_file():
            raise MissingInputError(f"--compare {path}: file not found")
    base = per_query(qrels, baseline, metrics)
    return {
        path: [compare_per_query(base, per_query(qrels, read_trec_run(path), metrics), name)
               for name in metrics]
        for path in others
    }  # fmt: skip


def format_comparisons(baseline: Path, comparisons: dict[Path, list[PairedComparison]]) -> str:
    """One Markdown table per compared run: each metric's means, difference, interval, p."""
    head = "| metric | baseline | run | difference | 95% CI | p | better / worse |"
    blocks = []
    for path, rows in comparisons.items():
        lines = [f"{path} against {baseline} ({rows[0].queries} queries)", head,
                 "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r.metric} | {r.cells()} |" for r in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run_qrels(args: argparse.Namespace) -> tuple[dict[str, dict[str, int]], str]:
    """``{qid: {pid: relevance}}`` from --qrels, or the --split qrels of --tables or --beir, and
    where they came from (for messages)."""
    if args.qrels:  # TREC 4-column or qid\tpid as `--model` reads them, or a BEIR qrels tsv
        rows = (read_beir_qrels if _has_beir_header(args.qrels) else read_msmarco_qrels)(args.qrels)
        source = str(args.qrels)
    elif args.tables:
        return read_qrels(args.tables / f"qrels-{args.split}"), f"{args.tables} {args.split}"
    elif args.beir:
        path = args.beir / "qrels" / f"{args.split}.tsv"
        rows, source = read_beir_qrels(path), str(path)
    else:
        raise ConfigError("--run needs qrels: --qrels FILE, or --tables DIR / --beir DIR (--split)")
    qrels: dict[str, dict[str, int]] = {}
    for row in rows:
        qrels.setdefault(row["qid"], {})[row["pid"]] = row["relevance"]
    return qrels, source


def _has_beir_header(path: Path) -> bool:
    if not path.is_file():
        return False  # the TREC reader says it is missing
    with open(path, encoding="utf-8") as f:
        return f.readline().startswith("query-id")
