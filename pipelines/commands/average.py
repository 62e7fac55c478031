"""`rqa average`: average the weights of several fine-tuned dual encoders, or of several
cross-encoders, into one model (a uniform or weighted "model soup", retrieval/model_soup.py),
e.g. the same config trained with several seeds, or a run's train_cross and train_joint
re-rankers. The result is saved like the models it averages, so `rqa evaluate/evaluate-sts`,
the pipeline and `SentenceTransformer(path)` (`CrossEncoder(path)` for re-rankers) load it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipelines.commands.inputs import is_cross_encoder, load_model
from retrieval.errors import ConfigError
from retrieval.model_soup import average_models, soup_weights
from retrieval.models import CrossEncoder
from retrieval.tables.store import atomic_dir

logger = logging.getLogger(__name__)
AVERAGE_FILE = "rqa_average.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "average", help="average the weights of models fine-tuned from one checkpoint"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="model folders (or HF ids), 2 or more: all dual encoders or all cross-encoders",
    )
    parser.add_argument(
        "--weights", nargs="+", type=float, help="one weight per model (default: equal)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the averaged model")
    parser.set_defaults(run=run)


def _load(name: str, index: int, count: int):
    logger.info("adding model %d of %d: %s", index + 1, count, name)
    if is_cross_encoder(name):  # a re-ranker keeps its classifier head
        return CrossEncoder.from_pretrained(name)
    return load_model(name)


def run(args: argparse.Namespace) -> int:
    try:
        weights = soup_weights(len(args.models), args.weights)
    except ValueError as err:
        raise ConfigError(f"--models/--weights: {err}") from None
    loaded = (_load(name, i, len(args.models)) for i, name in enumerate(args.models))
    try:
        model = average_models(loaded, weights)
    except ValueError as err:
        raise ConfigError(f"--models: {err} (models in the order given, from 0)") from None
    with atomic_dir(args.out) as tmp:
        model.save(tmp)
        record = {"models": [str(m) for m in args.models], "weights": weights}
        (tmp / AVERAGE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}: weighted average of {len(args.models)} models")
    return 0
