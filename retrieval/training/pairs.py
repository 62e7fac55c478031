"""Sentence-pair training data (``kind: pair``): labelled pairs (STS-B tsv, senteval_cn) or plain
sentences (a text file, or a corpus table) resolved once into ``OUTPUT/data/pairs``, with labels
scaled to [0, 1] and binarised, so every worker memory-maps the same small table.

Holds reading, scaling and binarising only; tokenizing is the collator's, losses the module's.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval.evaluation.pair_files import SentencePairs, find_pair_file, read_sentence_pairs
from retrieval.models.dual_encoder import passage_text
from retrieval.tables.errors import DataError
from retrieval.tables.readers.lines import iter_lines
from retrieval.tables.store import (
    iter_shards,
    read_manifest,
    shard_paths,
    table_exists,
    write_table,
)
from retrieval.training.config import PairConfig

logger = logging.getLogger(__name__)

# sentence2 is null for a plain sentence: it is its own partner (two dropout views, SimCSE).
# label is the file's; score = (label - low) / (high - low); positive = label >= positive_at.
PAIRS = pa.schema(
    [
        ("sentence1", pa.string()),
        ("sentence2", pa.string()),
        ("label", pa.float64()),
        ("score", pa.float64()),
        ("positive", pa.bool_()),
    ]
)
POSITIVE_SHARE = 0.8  # default positive_at: 80% up the label range (STS-B 0-5: 4.0)
LOSSES_ON_POSITIVE_PAIRS = ("infonce",)  # a pair is (anchor, positive); negatives are in-batch


def pairs_dir(config: PairConfig) -> Path:
    return Path(config.output_dir) / "data" / "pairs"


def label_scale(
    labels: np.ndarray,
    label_range: tuple[float, float] | None,
    positive_at: float | None,
) -> tuple[float, float, float]:
    """``(low, high, positive_at)``: the range that scales labels to ``[0, 1]`` (the given one,
    else the labels' own) and the label at which a pair becomes positive::

        score    = (label - low) / (high - low)        (1 for every pair when high == low)
        positive = label >= positive_at,  positive_at = low + 0.8 * (high - low) by default
    """
    low, high = label_range if label_range else (float(labels.min()), float(labels.max()))
    if positive_at is None:
        positive_at = low + POSITIVE_SHARE * (high - low)
    return float(low), float(high), float(positive_at)


def pair_table(pairs: SentencePairs, low: float, high: float, positive_at: float) -> pa.Table:
    """The labelled pairs as a :data:`PAIRS` table (see :func:`label_scale`)."""
    labels = np.asarray(pairs.labels, dtype=np.float64)
    score = (labels - low) / (high - low) if high > low else np.ones_like(labels)
    columns = {
        "sentence1": pairs.sentences1,
        "sentence2": pairs.sentences2,
        "label": labels,
        "score": score,
        "positive": labels >= positive_at,
    }
    return pa.table(columns, schema=PAIRS)


def sentence_table(sentences: list[str]) -> pa.Table:
    """Plain sentences as a :data:`PAIRS` table: no partner, no label."""
    nulls = [None] * len(sentences)
    columns = {"sentence1": sentences, "sentence2": nulls, "label": nulls, "score": nulls}
    return pa.table({**columns, "positive": nulls}, schema=PAIRS)


def read_sentences(path: Path) -> list[str]:
    """A text file, one sentence a line (blank lines skipped), in file order."""
    return [line.strip() for _, line in iter_lines(path) if line.strip()]


def corpus_sentences(corpus_dir: Path, limit: int | None) -> Iterator[pa.Table]:
    """A corpus table's passages (``title text``, as the dual encoder reads a passage) as
    sentence tables, one shard at a time (a large corpus is never held whole)."""
    left = math.inf if limit is None else limit
    for shard in iter_shards(corpus_dir, columns=["title", "text"]):
        titles, bodies = shard["title"].to_pylist(), shard["text"].to_pylist()
        texts = [passage_text(t, x) for t, x in zip(titles, bodies)][: int(min(left, len(titles)))]
        left -= len(texts)
        yield sentence_table(texts)
        if left <= 0:
            return


def prepare_pairs(config: PairConfig) -> dict:
    """Resolve the run's pair data into :func:`pairs_dir` once; returns the table's manifest.

    - ``data.pairs`` (``data.split``'s file): labelled pairs; losses in
      :data:`LOSSES_ON_POSITIVE_PAIRS` keep the positive ones only.
    - ``simcse_unsup``: plain sentences: the distinct sentences of ``data.pairs`` (both
      columns, first appearance first), the lines of ``data.sentences``, or the passages of
      ``data.tables``'s corpus.
    """
    out = pairs_dir(config)
    if table_exists(out):
        return read_manifest(out)
    data, limit = config.data, config.data.max_examples
    if data.tables is not None:  # simcse_unsup on a corpus (the config allows no other loss)
        source = str(Path(data.tables) / "corpus")
        meta = {"source": source, "kind": "sentences"}
        return write_table(out, corpus_sentences(Path(source), limit), PAIRS, meta=meta)
    if data.sentences is not None:
        sentences = read_sentences(Path(data.sentences))[:limit]
        if not sentences:
            raise DataError(data.sentences, "no sentences (every line is blank)")
        meta = {"source": str(data.sentences), "kind": "sentences"}
        return write_table(out, sentence_table(sentences), PAIRS, meta=meta)
    path = find_pair_file(Path(data.pairs), data.split)
    pairs = read_sentence_pairs(path)
    if config.loss == "simcse_unsup":
        distinct = list(dict.fromkeys([*pairs.sentences1, *pairs.sentences2]))[:limit]
        meta = {"source": str(path), "kind": "sentences"}
        return write_table(out, sentence_table(distinct), PAIRS, meta=meta)
    low, high, positive_at = label_scale(pairs.labels, data.label_range, data.positive_at)
    if pairs.labels.min() < low or pairs.labels.max() > high:
        raise DataError(
            path, f"labels span {pairs.labels.min():g}..{pairs.labels.max():g}, outside "
            f"data.label_range [{low:g}, {high:g}]", field="label",
        )  # fmt: skip
    table = pair_table(pairs, low, high, positive_at)
    if limit:
        table = table.slice(0, limit)
    if config.loss in LOSSES_ON_POSITIVE_PAIRS:
        table = table.filter(table["positive"])
        if table.num_rows == 0:
            raise DataError(path, f"no pair has a label >= {positive_at} (positive_at)")
    logger.info(
        "%s: %d pairs, labels %g..%g scaled to 0..1, positive at >= %g (%d positive)",
        path, table.num_rows, low, high, positive_at, int(np.sum(table["positive"])),
    )  # fmt: skip
    meta = {"source": str(path), "kind": "pairs", "label_range": [low, high]}
    meta["positive_at"] = positive_at
    return write_table(out, table, PAIRS, meta=meta)


class PairStore:
    """Random access to the resolved pairs by row, memory-mapped through HF ``datasets`` (as
    PassageStore), so a corpus of sentences is on disk once, whatever the number of workers."""

    def __init__(self, table_dir: str | os.PathLike, cache_dir: str | os.PathLike):
        from datasets import Dataset

        files = [str(p) for p in shard_paths(table_dir)]
        self.dataset = Dataset.from_parquet(files, cache_dir=str(cache_dir), keep_in_memory=False)
        self.meta = read_manifest(table_dir)["meta"]

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, rows) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        """``(sentences1, sentences2, score, positive)`` of ``rows``, in the order asked; a
        sentence without a partner is its own; a missing score or flag is NaN."""
        batch = self.dataset[[int(r) for r in rows]]
        first = batch["sentence1"]
        second = [b if b is not None else a for a, b in zip(first, batch["sentence2"])]
        score = np.array([np.nan if s is None else s for s in batch["score"]], dtype=np.float32)
        positive = np.array(
            [np.nan if p is None else float(p) for p in batch["positive"]], dtype=np.float32
        )
        return first, second, score, positive
