"""Command-line inputs: the options that name evaluation files, turned into prepared tables,
and loading ``--model``. Shared by the `rqa` commands; holds no scoring code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.errors import ConfigError, MissingInputError
from retrieval.models import DualEncoder
from retrieval.models.cross_encoder import SETTINGS_FILE as CROSS_ENCODER_FILE
from retrieval.precision import PRECISIONS
from retrieval.tables.readers import prepare_beir, prepare_msmarco, prepare_nq


def load_model(name: str, **overrides) -> DualEncoder:
    """Load ``--model``; one that cannot be loaded is an input error, not a traceback.

    transformers reports a missing folder as an OSError about the form of repo ids, which the
    CLI would show as a traceback; it becomes a one-line FileNotFoundError naming the argument.
    A saved cross-encoder would load as a dual encoder without its classifier, and encode
    vectors nobody trained: it is refused.
    """
    if is_cross_encoder(name):
        raise ConfigError(
            f"--model {name}: a cross-encoder ({CROSS_ENCODER_FILE}); this command takes a dual "
            "encoder"
        )
    try:
        return DualEncoder.from_pretrained(name, **overrides)
    except OSError as err:
        if Path(name).exists():
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            problem = f"cannot load a model from this folder ({reason})"
        else:
            problem = "no such model folder, nor a Hugging Face model id that can be loaded"
        raise MissingInputError(f"--model {name}: {problem}") from None


def is_cross_encoder(name: str | Path) -> bool:
    """Whether ``name`` is a folder RQA saved a cross-encoder into."""
    return (Path(name) / CROSS_ENCODER_FILE).is_file()


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    """``--precision``: fp32 by default, so a command reproduces fp32 numbers exactly."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="encoding precision: fp32 (exact, default), bf16, or auto (bf16 where the CPU or "
        "GPU runs it natively: AVX512-BF16/AMX, Ampere or newer; 2-3x faster, cosine > 0.9999)",
    )


def add_input_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("inputs (one of --tables, --beir, or --corpus with files)")
    source.add_argument("--tables", type=Path, help="a folder prepared by `rqa prepare`")
    source.add_argument(
        "--beir", type=Path, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    source.add_argument("--split", default="test", help="split to evaluate (default test)")
    source.add_argument("--corpus", type=Path, help="MS MARCO collection.tsv or DPR psgs_w100.tsv")
    source.add_argument("--queries", type=Path, help="MS MARCO-style queries tsv (qid\\ttext)")
    source.add_argument("--qrels", type=Path, help="qrels (TREC 4-column or qid\\tpid)")
    source.add_argument("--answers", type=Path, help="NQ qa.csv (question\\tanswers)")


def prepare_inputs(args: argparse.Namespace, out_dir: Path) -> tuple[Path, str]:
    """Return a folder of tables and the split to evaluate, preparing raw files if needed."""
    split = args.split
    if args.tables:
        return args.tables, split
    if args.beir:
        prepare_beir(args.beir, out_dir, splits=[split])
        return out_dir, split
    if args.corpus and args.answers:
        prepare_nq(out_dir, passages=args.corpus, qa={split: args.answers})
        return out_dir, split
    if args.corpus and args.queries and args.qrels:
        prepare_msmarco(args.corpus, {split: args.queries}, {split: args.qrels}, out_dir)
        return out_dir, split
    raise ConfigError(
        "name the inputs: --tables DIR, --beir DIR, --corpus with --queries and --qrels, "
        "or --corpus with --answers"
    )
