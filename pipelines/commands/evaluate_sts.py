"""`rqa evaluate-sts`: Spearman and Pearson correlation of pair similarities with human scores
(STS Benchmark tsv or senteval_cn files), as sentence-transformers' EmbeddingSimilarityEvaluator.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from pathlib import Path

from pipelines.commands.inputs import add_precision_arg, load_model
from retrieval.errors import ConfigError, UserError
from retrieval.evaluation import SIMILARITIES, evaluate_sts, find_pair_file, read_sentence_pairs
from retrieval.models.dual_encoder import SIDES, DualEncoder, DualEncoderSettings
from retrieval.tables.store import write_json_atomic

logger = logging.getLogger(__name__)


def add_pair_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with `rqa evaluate-pairs`: model, side, batch size, precision, output."""
    parser.add_argument("--model", required=True, help="local model folder or HF model id")
    parser.add_argument("--split", default="dev", help="split to read (default dev)")
    parser.add_argument(
        "--side",
        choices=SIDES,
        default="query",
        help="encode both sentences as queries (default) or passages: prefix and max length",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model setting, e.g. pooling=cls, pool_prefix=false, "
        "query_prefix='query: ' (repeatable)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, help="write the metrics JSON here")
    add_precision_arg(parser)


def parse_settings(values: list[str]) -> dict:
    """``--set KEY=VALUE`` options as DualEncoderSettings overrides, typed by the field."""
    types = typing.get_type_hints(DualEncoderSettings)
    names = {f.name for f in dataclasses.fields(DualEncoderSettings)}
    overrides: dict = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or key not in names:
            raise ConfigError(
                f"--set expects KEY=VALUE with KEY one of {', '.join(sorted(names))}; got {value!r}"
            )
        kind = types[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                overrides[key] = text.lower() in ("true", "1")
            else:
                overrides[key] = kind(text)
        except ValueError:
            raise ConfigError(f"--set {key}: {text!r} is not a {kind.__name__}") from None
    return overrides


def load_with_settings(name: str, values: list[str]) -> DualEncoder:
    """``--model`` with the ``--set`` overrides; a setting that cannot work is a ConfigError."""
    overrides = parse_settings(values)
    try:
        return load_model(name, **overrides)
    except ValueError as err:
        if not overrides or isinstance(err, UserError):
            raise
        raise ConfigError(f"--set: {err}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-sts", help="STS: Spearman/Pearson of cosine, dot, euclidean, manhattan"
    )
    parser.add_argument(
        "--sts",
        type=Path,
        required=True,
        help="folder with SPLIT.tsv (STS-B layout) or SPLIT.data / *.SPLIT.data (senteval_cn), "
        "or one such file",
    )
    add_pair_args(parser)
    parser.set_defaults(run=run)


def format_sts_table(title: str, metrics: dict[str, float]) -> str:
    lines = [title, "| similarity | Spearman | Pearson |", "|---|---|---|"]
    for name in SIMILARITIES:
        spearman, pearson = metrics[f"spearman_{name}"], metrics[f"pearson_{name}"]
        lines.append(f"| {name} | {spearman:.4f} | {pearson:.4f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = find_pair_file(args.sts, args.split)
    pairs = read_sentence_pairs(path)  # bad lines fail before the model is loaded
    model = load_with_settings(args.model, args.set)
    logger.info("STS of %s on %s (%d pairs)", args.model, path, len(pairs))
    metrics = evaluate_sts(model, pairs, args.side, args.batch_size, args.precision)
    print(format_sts_table(f"{args.model} on {path} ({len(pairs)} pairs)", metrics))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            **metrics,
            "model": str(args.model),
            "file": str(path),
            "split": args.split,
            "pairs": len(pairs),
            "side": args.side,
            "settings": dataclasses.asdict(model.settings),
            "precision": args.precision,
        }
        write_json_atomic(args.output, payload)
    return 0
