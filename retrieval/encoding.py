"""Batched encoding of queries and passages into numpy vectors and embeddings tables.

Texts are tokenized once, sorted by length and padded per batch, so a batch of short texts
does not pay for the longest text of the corpus.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from retrieval.models.dual_encoder import DualEncoder, passage_text
from retrieval.tables.schemas import embeddings_schema
from retrieval.tables.store import iter_shards, read_manifest, write_table

logger = logging.getLogger(__name__)


def _encode_sorted(
    model: DualEncoder,
    texts: list[str],
    max_len: int,
    side: str,
    batch_size: int,
    progress: tqdm | None,
) -> np.ndarray:
    """Encode ``texts`` longest first (so memory peaks at once and padding is minimal)."""
    if not texts:  # the tokenizer fails on an empty batch; an empty shard is a valid table
        return np.empty((0, model.dim), dtype=np.float32)
    tokenizer = model.tokenizer
    ids = tokenizer(texts, truncation=True, max_length=max_len, add_special_tokens=True)[
        "input_ids"
    ]
    order = np.argsort([-len(x) for x in ids], kind="stable")
    encode = model.encode_query if side == "query" else model.encode_passage
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            vectors = encode({k: v.to(_device(model)) for k, v in batch.items()})
            out[rows] = vectors.float().cpu().numpy()
            if progress is not None:
                progress.update(len(rows))
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_queries(
    model: DualEncoder, texts: list[str], batch_size: int = 128, show_progress: bool = True
) -> np.ndarray:
    """Query vectors ``[n, dim]`` (float32), in the order of ``texts``."""
    texts = [model.settings.query_prefix + t for t in texts]
    with tqdm(total=len(texts), desc="encode queries", disable=not show_progress) as bar:
        return _encode_sorted(model, texts, model.settings.query_max_len, "query", batch_size, bar)


def encode_passages(
    model: DualEncoder,
    titles: list[str | None],
    texts: list[str],
    batch_size: int = 32,
    show_progress: bool = True,
    progress: tqdm | None = None,
) -> np.ndarray:
    """Passage vectors ``[n, dim]`` (float32) for title + text, in input order."""
    prefix = model.settings.passage_prefix
    joined = [prefix + passage_text(a, b) for a, b in zip(titles, texts)]
    max_len = model.settings.passage_max_len
    if progress is not None:
        return _encode_sorted(model, joined, max_len, "passage", batch_size, progress)
    with tqdm(total=len(joined), desc="encode passages", disable=not show_progress) as bar:
        return _encode_sorted(model, joined, max_len, "passage", batch_size, bar)


def _embedding_shards(
    model: DualEncoder, corpus_dir: Path, batch_size: int, dtype: str, show_progress: bool
) -> Iterator[pa.Table]:
    total = read_manifest(corpus_dir)["rows"]
    schema = embeddings_schema(model.dim, dtype)
    with tqdm(total=total, desc="encode corpus", disable=not show_progress) as bar:
        for shard in iter_shards(corpus_dir, columns=["pid", "title", "text"]):
            titles, texts = shard["title"].to_pylist(), shard["text"].to_pylist()
            vectors = encode_passages(model, titles, texts, batch_size, progress=bar)
            flat = pa.array(
                vectors.astype(dtype).reshape(-1), type=schema.field("vector").type.value_type
            )
            column = pa.FixedSizeListArray.from_arrays(flat, model.dim)
            yield pa.table({"pid": shard["pid"], "vector": column}, schema=schema)


def encode_corpus(
    model: DualEncoder,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    batch_size: int = 32,
    dtype: str = "float32",
    show_progress: bool = True,
) -> dict:
    """Encode a corpus table shard by shard into an embeddings table; returns its manifest.

    Memory is bounded by one corpus shard, not by the corpus.
    """
    corpus_dir = Path(corpus_dir)
    logger.info("encoding %s into %s", corpus_dir, out_dir)
    shards = _embedding_shards(model, corpus_dir, batch_size, dtype, show_progress)
    meta = {"dim": model.dim, "dtype": dtype, "normalized": model.settings.normalize}
    return write_table(out_dir, shards, embeddings_schema(model.dim, dtype), meta=meta)
