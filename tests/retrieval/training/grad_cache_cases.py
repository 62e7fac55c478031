"""The batch, models and gradient read-outs the gradient-caching tests share (and their spawned
workers import): 6 queries of uneven length, each with a positive and a hard negative."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from retrieval.models import DualEncoder
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.training.grad_cache import in_batch_order, length_chunks

QUERIES = [
    "what do cats eat",
    "how tall is mount everest in metres",
    "why",
    "why is the sky blue during the day but red at sunset",
    "dogs",
    "who wrote the book on dense passage retrieval",
]
# query i: positive 2i, hard negative 2i+1; lengths vary so that chunks carry padding
PASSAGES = [
    f"passage {i} about {QUERIES[i // 2]} " + "and more words " * (i % 4) for i in range(12)
]
GROUP = 2  # passages per query


def dual_encoder(folder: Path, dtype: torch.dtype = torch.float64) -> DualEncoder:
    """The tiny random BERT as a cosine dual encoder (same weights at every load)."""
    return DualEncoder.from_pretrained(folder, temperature=0.05).to(dtype)


def cross_encoder(folder: Path, dtype: torch.dtype = torch.float64) -> CrossEncoder:
    torch.manual_seed(1)  # its new classifier head is drawn at load
    return CrossEncoder.from_pretrained(folder, max_len=64).to(dtype)


def dual_batch(model: DualEncoder, queries: slice = slice(None)) -> dict:
    """The queries in ``queries`` and their passages, as the dual collator builds them."""
    rows = range(len(QUERIES))[queries]
    passages = [PASSAGES[i * GROUP + j] for i in rows for j in range(GROUP)]
    return {
        "query_inputs": model.tokenize_queries([QUERIES[i] for i in rows]),
        "passage_inputs": model.tokenize_passages([None] * len(passages), passages),
    }


def joint_batch(dual: DualEncoder, cross: CrossEncoder) -> dict:
    """The dual batch plus every (query, passage) pair of each query's list, for the re-ranker."""
    batch = dual_batch(dual)
    repeated = [q for q in QUERIES for _ in range(GROUP)]
    batch["pair_inputs"] = cross.tokenize(repeated, [None] * len(PASSAGES), PASSAGES)
    return batch


def gradients(module: nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's gradient (clones); those the loss did not reach are left out."""
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def chunked_embeddings(encode, inputs: dict, chunk: int) -> torch.Tensor:
    """``encode`` over the chunks the cached step uses, with a graph: the dropout masks then
    are the ones the cached step draws (a whole-batch forward draws others)."""
    parts, order = length_chunks(inputs, chunk)
    return in_batch_order(torch.cat([encode(part) for part in parts]), order)


def assert_same_gradients(got: dict, want: dict, rtol: float, atol: float) -> None:
    assert got.keys() == want.keys()
    assert max(float(g.abs().max()) for g in want.values()) > 1e-3, "nothing to compare"
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=name)
