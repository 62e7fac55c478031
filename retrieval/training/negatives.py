"""Examples without negatives: drawing random corpus passages for them is a choice the config
makes (``random_negatives``) and the log reports, never a silent fallback; a margin_mse run,
which has no margin to learn from them, leaves them out (logged too).

Checked on the launching process before any worker starts, so a bad setting is one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.compute as pc

from retrieval.errors import ConfigError
from retrieval.training.config import TrainConfig
from retrieval.training.examples import load_examples

logger = logging.getLogger(__name__)


def negatives_needed(config: TrainConfig) -> int:
    """Negatives drawn per example: hard negatives (dual) or the rest of a group (cross,
    joint); none for RetroMAE, whose examples are the corpus passages themselves, nor for
    pairs, each its own group."""
    if config.kind == "dual":
        return config.hard_negatives
    if config.kind in ("cross", "joint"):
        return config.group_size - 1
    return 0


def check_negatives(config: TrainConfig) -> int:
    """How many examples have positives but no negatives; a ConfigError if some do, the config
    needs negatives and ``random_negatives`` is off."""
    if negatives_needed(config) == 0:
        return 0
    tables = Path(config.data.tables)
    examples = load_examples(tables, config.data.split, config.data.examples)
    if config.data.max_examples:
        examples = examples.slice(0, config.data.max_examples)
    has_positive = pc.greater(pc.list_value_length(examples["positives"]), 0)
    no_negative = pc.equal(pc.list_value_length(examples["negatives"]), 0)
    empty = examples.filter(pc.and_(has_positive, no_negative))
    if empty.num_rows == 0:
        return 0
    source = config.data.examples or f"{tables}/examples-{config.data.split} (or its qrels)"
    if config.loss == "margin_mse":  # kind dual: no negative, no margin to distil
        logger.info(
            "%d of %d examples have no negatives: left out (margin_mse distils margins)",
            empty.num_rows,
            examples.num_rows,
        )
        return empty.num_rows
    if not config.random_negatives:
        raise ConfigError(
            f"{source}: {empty.num_rows} of {examples.num_rows} examples have no negatives "
            f"(first: qid {empty['qid'][0].as_py()}); set random_negatives: true to draw random "
            f"corpus passages for them, or give them negatives"
        )
    logger.info(
        "%d of %d examples have no negatives: random corpus passages stand in (random_negatives)",
        empty.num_rows,
        examples.num_rows,
    )
    return empty.num_rows
