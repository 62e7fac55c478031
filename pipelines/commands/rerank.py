"""`rqa rerank`: re-order each query's top ``--depth`` of a TREC run file with a cross-encoder,
alone or fused with the run's own order by reciprocal rank fusion (``--fuse rrf``).

A thin layer: scoring is retrieval/rerank.py's, fusion retrieval/fusion.py's, the file format
retrieval/metrics/trec_run.py's; this module only gathers inputs and writes the result.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from pipelines.commands.inputs import add_input_args, add_precision_arg, prepare_inputs
from retrieval.errors import ConfigError, MissingInputError
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.metrics import read_trec_run, write_trec_run
from retrieval.models import CrossEncoder
from retrieval.rerank import rerank_top, top_of_run
from retrieval.tables.errors import DataError
from retrieval.tables.lookup import rows_by_id
from retrieval.tables.readers import prepare_msmarco
from retrieval.tables.store import replace_atomically

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rerank", help="re-rank a TREC run file with a cross-encoder")
    parser.add_argument(
        "--cross-encoder", required=True, help="cross-encoder folder (or HF id) to score with"
    )
    parser.add_argument(
        "--run", dest="trec_run", type=Path, required=True, help="TREC run file to re-rank"
    )
    add_input_args(parser)
    parser.add_argument("--depth", type=int, default=100, help="re-rank each query's top N")
    parser.add_argument("--out", type=Path, required=True, help="write the TREC run here")
    parser.add_argument(
        "--fuse",
        choices=("rrf",),
        help="rrf: fuse the re-ranker's order with the run's by reciprocal rank fusion (k=60)",
    )
    parser.add_argument("--tag", default="rqa-rerank", help="run tag (last column)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, help="pair max length in tokens (model default)")
    add_precision_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.depth < 1:
        raise ConfigError(f"--depth must be a positive integer, got {args.depth}")
    if len(args.tag.split()) != 1 or args.tag != args.tag.strip():
        raise ConfigError(f"--tag {args.tag!r} must be one word")
    if not args.trec_run.is_file():
        raise MissingInputError(f"--run {args.trec_run}: file not found")
    retrieved = read_trec_run(args.trec_run)
    if not retrieved:
        raise DataError(args.trec_run, "no lines: nothing to re-rank")
    top = top_of_run(retrieved, args.depth)
    with tempfile.TemporaryDirectory(prefix="rqa-tables-") as tmp:
        tables_dir, split = _texts(args, Path(tmp) / "tables")
        _check_texts(args.trec_run, tables_dir, split, top)
        model = _load_cross_encoder(args.cross_encoder, args.max_len)
        result = rerank_top(
            model, top, tables_dir / "corpus", tables_dir / f"queries-{split}",
            args.batch_size, args.precision,
        )  # fmt: skip
    if args.fuse == "rrf":
        result = reciprocal_rank_fusion([top, result])
    _write_run_atomic(result, args.out, args.tag)
    print(f"re-ranked the top {args.depth} of {len(result)} queries -> {args.out}")
    return 0


def _texts(args: argparse.Namespace, out_dir: Path) -> tuple[Path, str]:
    """Tables holding the passage and query texts; query files need no qrels here."""
    if args.corpus and args.queries and not args.qrels:
        prepare_msmarco(args.corpus, {args.split: args.queries}, {}, out_dir)
        return out_dir, args.split
    return prepare_inputs(args, out_dir)


def _check_texts(run_path: Path, tables_dir: Path, split: str, top: dict) -> None:
    """Every query and doc of the run has a text in the inputs; checked before the model loads."""
    pids = {pid for row in top.values() for pid in row}
    checks = (("qid", f"queries-{split}", set(top), "text"), ("pid", "corpus", pids, "title"))
    for key, table, ids, column in checks:  # column: a small one, as rows_by_id needs one
        missing = sorted(ids - rows_by_id(tables_dir / table, key, ids, [column]).keys())
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            problem = f"{len(missing)} {key}s not in the inputs' {table}: {shown}"
            raise DataError(run_path, problem, field=key)


def _load_cross_encoder(name: str, max_len: int | None) -> CrossEncoder:
    """The model, or a one-line error naming the argument (transformers raises OSError)."""
    overrides = {"max_len": max_len} if max_len else {}
    try:
        return CrossEncoder.from_pretrained(name, **overrides)
    except OSError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MissingInputError(f"--cross-encoder {name}: cannot load a model ({reason})") from None


def _write_run_atomic(result: dict, path: Path, tag: str) -> None:
    """The run file appears whole or not at all (written beside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: write_trec_run(result, tmp, tag=tag))
