"""Batched encoding of queries and passages into numpy vectors and embeddings tables.

Texts are tokenized once, sorted by length and padded per batch, so no batch pays for the longest
text of the corpus; on CPU a batch is also capped in tokens, so its activations stay in cache.
Encoding runs in float32 (exact) by default, or in bfloat16 where the hardware runs it natively.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutput

from retrieval.models.dual_encoder import DualEncoder, pad_token_ids, passage_text
from retrieval.precision import bf16_copy, resolve_precision
from retrieval.tables.schemas import embeddings_schema
from retrieval.tables.store import iter_shards, read_manifest, write_table

logger = logging.getLogger(__name__)

# Padded tokens per batch on CPU: MiniLM on a 2-core AVX-512 machine runs 15-20% faster at
# 1-3k tokens a batch than at 8k (32 texts of 256), whose activations (tens of MB) spill the
# caches; see benchmarks/README.md.
CPU_BATCH_TOKENS = 2048
Encoder = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class _Bf16Tower(nn.Module):
    """A bfloat16 copy of an encoder tower that hands back float32 hidden states.

    The matrix products run in bf16; pooling and normalisation then run in float32, so the
    vectors lose only what bf16 weights and activations lose (cosine to fp32 > 0.9999 for
    MiniLM on SciFact). The caller's model is left untouched.
    """

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = bf16_copy(tower)
        self.config = tower.config

    def forward(self, **inputs) -> BaseModelOutput:
        out = self.tower(**inputs)
        hidden = out.hidden_states
        return BaseModelOutput(
            last_hidden_state=out.last_hidden_state.float(),
            hidden_states=tuple(h.float() for h in hidden) if hidden is not None else None,
        )


def _encoder(model: DualEncoder, side: str, precision: str) -> Encoder:
    """The function from a padded batch to pooled vectors, for one side in one precision."""
    precision = resolve_precision(precision, _device(model))
    if precision == "fp32":
        return model.encode_query if side == "query" else model.encode_passage
    tower = model.query_model if side == "query" else model.passage_model
    # A DualEncoder over the bf16 copy pools, applies the head and normalises exactly as the
    # model does (in fp32), with the side's own prefix length.
    copy = DualEncoder(_Bf16Tower(tower), model.tokenizer, model.settings, head=model.head)
    return copy.encode_query if side == "query" else copy.encode_passage


def _token_batches(
    lengths: np.ndarray, max_texts: int, max_tokens: int | None
) -> Iterator[np.ndarray]:
    """Row numbers, longest first, in batches of at most ``max_texts`` texts and ``max_tokens``
    padded tokens (None: no token cap); a text longer than ``max_tokens`` goes alone.
    """
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        count = max(1, max_texts)
        if max_tokens is not None:
            count = min(count, max(1, max_tokens // max(int(lengths[order[start]]), 1)))
        yield order[start : start + count]
        start += count


def _batch_tokens(device: torch.device, max_tokens: int | None) -> int | None:
    """The token cap of a batch: ``max_tokens`` if given, else CPU_BATCH_TOKENS on CPU only."""
    if max_tokens is not None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        return max_tokens
    return CPU_BATCH_TOKENS if device.type == "cpu" else None


def _encode_sorted(
    model: DualEncoder,
    encode: Encoder,
    texts: list[str],
    side: str,
    batch_size: int,
    max_tokens: int | None,
    progress: tqdm | None,
) -> np.ndarray:
    """Encode ``texts`` as ``side`` reads them (prefix, template, max length: see
    :meth:`DualEncoder.token_ids`) longest first, in batches of ``batch_size`` texts at most,
    and on CPU (or when ``max_tokens`` is given) of a bounded number of padded tokens.

    Longest first makes memory peak at once; sorting makes padding minimal.
    """
    if not texts:  # the tokenizer fails on an empty batch; an empty shard is a valid table
        return np.empty((0, model.dim), dtype=np.float32)
    tokenizer = model.tokenizer
    ids = model.token_ids(texts, side)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = tokenizer.padding_side == "left"
    device = _device(model)
    budget = _batch_tokens(device, max_tokens)
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for rows in _token_batches(lengths, batch_size, budget):
            batch = pad_token_ids([ids[i] for i in rows], pad_id, left)
            vectors = encode({k: v.to(device) for k, v in batch.items()})
            out[rows] = vectors.float().cpu().numpy()
            if progress is not None:
                progress.update(len(rows))
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_queries(
    model: DualEncoder,
    texts: list[str],
    batch_size: int = 128,
    show_progress: bool = True,
    precision: str = "fp32",
    max_tokens: int | None = None,
) -> np.ndarray:
    """Query vectors ``[n, dim]`` (float32), in the order of ``texts``.

    A batch holds at most ``batch_size`` texts and ``max_tokens`` padded tokens (default: no
    cap on GPU, ``CPU_BATCH_TOKENS`` on CPU, where cache-sized batches run faster); batching
    changes no vector beyond float rounding. ``precision``: ``fp32`` (exact), ``bf16`` or
    ``auto`` (bf16 where the hardware runs it natively, see :func:`bf16_is_fast`); bf16 makes
    a bf16 copy of the tower per call (per corpus in :func:`encode_corpus`).
    """
    encode = _encoder(model, "query", precision)
    with tqdm(total=len(texts), desc="encode queries", disable=not show_progress) as bar:
        return _encode_sorted(model, encode, texts, "query", batch_size, max_tokens, bar)


def _passage_texts(titles: list[str | None], texts: list[str]) -> list[str]:
    return [passage_text(a, b) for a, b in zip(titles, texts)]


def encode_passages(
    model: DualEncoder,
    titles: list[str | None],
    texts: list[str],
    batch_size: int = 32,
    show_progress: bool = True,
    progress: tqdm | None = None,
    precision: str = "fp32",
    max_tokens: int | None = None,
) -> np.ndarray:
    """Passage vectors ``[n, dim]`` (float32) for title + text, in input order.

    ``batch_size``, ``precision`` and ``max_tokens`` as for :func:`encode_queries`.
    """
    joined = _passage_texts(titles, texts)
    encode = _encoder(model, "passage", precision)
    if progress is not None:
        return _encode_sorted(model, encode, joined, "passage", batch_size, max_tokens, progress)
    with tqdm(total=len(joined), desc="encode passages", disable=not show_progress) as bar:
        return _encode_sorted(model, encode, joined, "passage", batch_size, max_tokens, bar)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Give memory freed by the last shard back to the OS.

    glibc keeps freed heap pages of the shard's texts, token lists and tensors of varying
    sizes for reuse, but fragmentation keeps it from reusing all of them: without this the
    resident size creeps up with every shard (about 100 MiB over 100 shards) instead of
    staying at one shard's worth.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _embedding_shards(
    model: DualEncoder,
    corpus_dir: Path,
    batch_size: int,
    dtype: str,
    show_progress: bool,
    precision: str,
    max_tokens: int | None,
) -> Iterator[pa.Table]:
    total = read_manifest(corpus_dir)["rows"]
    encode = _encoder(model, "passage", precision)  # one bf16 copy for all shards
    with tqdm(total=total, desc="encode corpus", disable=not show_progress) as bar:
        for shard in iter_shards(corpus_dir, columns=["pid", "title", "text"]):
            joined = _passage_texts(shard["title"].to_pylist(), shard["text"].to_pylist())
            vectors = _encode_sorted(model, encode, joined, "passage", batch_size, max_tokens, bar)
            yield embeddings_table(shard["pid"], vectors, dtype)
            del shard, joined, vectors
            _release_freed_memory()


def embeddings_table(pids: pa.Array | list[str], vectors: np.ndarray, dtype: str) -> pa.Table:
    """An embeddings table (``pid``, fixed-size ``vector``) from ``[n, dim]`` float vectors."""
    schema = embeddings_schema(vectors.shape[1], dtype)
    flat = pa.array(vectors.astype(dtype).reshape(-1), type=schema.field("vector").type.value_type)
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table({"pid": pids, "vector": column}, schema=schema)


def encode_corpus(
    model: DualEncoder,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    batch_size: int = 32,
    dtype: str = "float32",
    show_progress: bool = True,
    precision: str = "fp32",
    max_tokens: int | None = None,
) -> dict:
    """Encode a corpus table shard by shard into an embeddings table; returns its manifest.

    Memory is bounded by one corpus shard, not by the corpus. ``precision`` and ``max_tokens``
    as for :func:`encode_queries`; when bf16 is used, the manifest's meta says so.
    """
    corpus_dir = Path(corpus_dir)
    used = resolve_precision(precision, _device(model))
    logger.info("encoding %s into %s (%s)", corpus_dir, out_dir, used)
    shards = _embedding_shards(
        model, corpus_dir, batch_size, dtype, show_progress, used, max_tokens
    )
    meta = {"dim": model.dim, "dtype": dtype, "normalized": model.settings.normalize}
    if used != "fp32":
        meta["precision"] = used
    return write_table(out_dir, shards, embeddings_schema(model.dim, dtype), meta=meta)
