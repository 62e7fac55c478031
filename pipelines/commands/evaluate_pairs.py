"""`rqa evaluate-pairs`: pair classification as MTEB's (best-accuracy and best-F1 thresholds,
average precision); thresholds found on --split are applied to each --apply-to split.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipelines.commands.evaluate_sts import add_pair_args, load_with_settings
from retrieval.evaluation import (
    SIMILARITIES,
    evaluate_pair_classification,
    find_pair_file,
    read_sentence_pairs,
)
from retrieval.evaluation.pair_classification import binary_labels
from retrieval.tables.store import write_json_atomic

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-pairs", help="pair classification: accuracy/F1 thresholds and AP"
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with SPLIT.tsv (STS-B layout) or SPLIT.data / *.SPLIT.data (senteval_cn)",
    )
    parser.add_argument(
        "--apply-to",
        nargs="+",
        default=[],
        metavar="SPLIT",
        help="splits to report at the thresholds found on --split",
    )
    parser.add_argument(
        "--positive-at",
        type=float,
        help="graded labels: a pair is positive when its label is at least this (e.g. 4.0)",
    )
    add_pair_args(parser)
    parser.set_defaults(run=run)


def format_pairs_table(title: str, metrics: dict[str, float]) -> str:
    lines = [
        title,
        "| similarity | accuracy | threshold | F1 | precision | recall | threshold | AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SIMILARITIES:
        values = [
            metrics[f"{name}_{key}"]
            for key in (
                "accuracy",
                "accuracy_threshold",
                "f1",
                "precision",
                "recall",
                "f1_threshold",
                "ap",
            )
        ]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    pairs = read_sentence_pairs(find_pair_file(args.data, args.split))
    others = {
        split: read_sentence_pairs(find_pair_file(args.data, split)) for split in args.apply_to
    }
    for each in (pairs, *others.values()):  # bad labels fail before the model is loaded
        binary_labels(each, args.positive_at)
    model = load_with_settings(args.model, args.set)
    results = evaluate_pair_classification(
        model,
        pairs,
        args.split,
        args.positive_at,
        others,
        args.side,
        args.batch_size,
        args.precision,
    )
    for split, metrics in results.items():
        source = pairs if split == args.split else others[split]
        how = "own thresholds" if split == args.split else f"thresholds of {args.split}"
        title = f"{args.model} on {source.path} ({len(source)} pairs, {how})"
        print(format_pairs_table(title, metrics) + "\n")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            **results,
            "model": str(args.model),
            "thresholds_from": args.split,
            "positive_at": args.positive_at,
            "side": args.side,
            "precision": args.precision,
        }
        write_json_atomic(args.output, payload)
    return 0
