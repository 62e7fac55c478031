"""`rqa whiten`: fit BERT-whitening on a sample of texts and save the model with it as a Dense
head, which `rqa encode/search/evaluate`, the pipeline and `SentenceTransformer(path)` apply.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from pipelines.commands.inputs import add_precision_arg, load_model
from retrieval.errors import ConfigError, MissingInputError
from retrieval.evaluation import read_sentence_pairs
from retrieval.models.dual_encoder import SIDES, passage_text
from retrieval.tables.readers.beir import read_beir_corpus
from retrieval.tables.readers.lines import empty_file, iter_lines
from retrieval.tables.store import atomic_dir, read_table, table_exists
from retrieval.whitening import pooled_vectors, whitened

logger = logging.getLogger(__name__)
WHITENING_FILE = "rqa_whitening.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("whiten", help="add BERT-whitening to a model")
    parser.add_argument("--model", required=True, help="local model folder or HF model id")
    parser.add_argument(
        "--texts",
        type=Path,
        required=True,
        help="texts to fit on: a corpus table, a BEIR folder or corpus.jsonl, an STS file "
        "(.tsv with a header, or senteval .data: both sentences), or a text file (one a line)",
    )
    parser.add_argument("--dim", type=int, required=True, help="dimensions kept (k)")
    parser.add_argument("--beta", type=float, default=1.0, help="mean removed: x - beta*mu")
    parser.add_argument("--gamma", type=float, default=1.0, help="scaling s^(-gamma/2)")
    parser.add_argument("--sample", type=int, default=10000, help="at most this many texts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--side", choices=SIDES, default="passage", help="encode texts as")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True, help="folder of the whitened model")
    add_precision_arg(parser)
    parser.set_defaults(run=run)


def read_texts(path: Path) -> list[str]:
    """Distinct texts of ``path``, in file order (see ``--texts``)."""
    if path.is_dir():
        if table_exists(path):
            table = read_table(path, columns=["title", "text"])
            texts = map(passage_text, table["title"].to_pylist(), table["text"].to_pylist())
        elif (path / "corpus.jsonl").is_file():
            rows = read_beir_corpus(path / "corpus.jsonl")
            texts = (passage_text(row["title"], row["text"]) for row in rows)
        else:
            raise MissingInputError(f"{path}: neither a corpus table nor a BEIR folder")
    elif path.suffix == ".jsonl":
        texts = (passage_text(row["title"], row["text"]) for row in read_beir_corpus(path))
    elif path.suffix in (".tsv", ".data"):
        pairs = read_sentence_pairs(path)
        texts = [*pairs.sentences1, *pairs.sentences2]
    else:
        texts = (line for _, line in iter_lines(path) if line.strip())
    unique = list(dict.fromkeys(texts))
    if not unique:
        raise empty_file(path, "texts")
    return unique


def run(args: argparse.Namespace) -> int:
    if args.dim < 1 or args.sample < 2:
        raise ConfigError(f"--dim must be >= 1 and --sample >= 2, got {args.dim}, {args.sample}")
    texts = read_texts(args.texts)
    if len(texts) > args.sample:
        rows = np.sort(np.random.default_rng(args.seed).choice(len(texts), args.sample, False))
        texts = [texts[i] for i in rows]
    model = load_model(args.model)
    if args.dim > model.dim:
        raise ConfigError(f"--dim {args.dim} is more than the model's {model.dim} dimensions")
    logger.info("fitting whitening (k=%d) on %d texts of %s", args.dim, len(texts), args.texts)
    vectors = pooled_vectors(model, texts, args.side, args.batch_size, args.precision)
    try:
        result = whitened(model, vectors, args.dim, args.beta, args.gamma)
    except ValueError as err:
        raise ConfigError(f"--texts {args.texts}: {err}") from None
    with atomic_dir(args.out) as tmp:
        result.save(tmp)
        record = {
            "model": str(args.model),
            "texts": str(args.texts),
            "fitted_on": len(texts),
            "dim": args.dim,
            "beta": args.beta,
            "gamma": args.gamma,
            "side": args.side,
            "seed": args.seed,
            "precision": args.precision,
        }
        (tmp / WHITENING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}: {model.dim} -> {args.dim} dims, fitted on {len(texts)} texts")
    return 0
