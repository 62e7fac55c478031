"""Gradient caching: a contrastive step over a batch far larger than its activations would allow.

A contrastive loss couples every query with every passage of the batch (and, with cross-batch
negatives, of every worker), so the batch cannot simply be split into micro-batches. GradCache
(Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup")
notices that the coupling lives only in the loss over the embeddings, which are small, and
runs one step in three passes:

1. encode every chunk of each input kind (queries, passages, re-ranker pairs) without a graph,
   recording the random-number state before each chunk's forward; the rows are first ordered
   by length, so each chunk holds texts of similar length and is trimmed to its own longest
   (:func:`length_chunks`), and the embeddings are put back in batch order;
2. concatenate the chunks' embeddings into full-batch leaf tensors and compute the loss on them
   exactly as the uncached module does (cross-batch gathers included: every worker runs this
   pass, so the gather's backward all-reduce meets on every rank); ``d loss / d embeddings``
   is the cached gradient;
3. for each chunk, restore its random-number state (the same dropout masks), encode it again
   with a graph and back-propagate ``sum(embeddings_chunk * cached_gradient_chunk)``, whose
   parameter gradient is that chunk's share of ``d loss / d parameters``.

Memory then grows with the chunk, not the batch: one chunk's activations at a time, plus the
embeddings of the whole batch. Embedding tables take sparse gradients while a step runs
(:func:`sparse_embedding_gradients`): each chunk's backward then yields the rows its tokens
touched, not a table-sized gradient to fill with zeros and add. The price is a second forward
per chunk (the first is cheaper, having no graph). With ``keep_last`` the last chunk of each
input kind is encoded with its graph in pass 1 and that graph is back-propagated in pass 3
instead of a second forward: one forward saved per kind (half the extra cost at two chunks a
side) for one more chunk's activations per kind held through pass 2 (pass 3 back-propagates
kept graphs before it encodes anything again, freeing them). ``keep_last = N`` keeps the last
N chunks so: a memory budget of N chunks a kind that does not grow with the batch, spent to
skip N of the second forwards (a batch of at most N chunks a side then runs as the plain step
does).

How it fits DeepSpeed: the engine expects ``loss = engine(**batch); engine.backward(loss);
engine.step()``, with gradient reduction (all-reduce, or ZeRO-2's reduce-scatter in hooks that
fire as each parameter's gradient is accumulated), clipping and the optimizer step driven by
``backward`` and ``step``. Passes 1-3 run inside the module's forward and collect each
parameter's gradient with ``torch.autograd.grad``, which leaves ``param.grad`` alone. The
forward returns the loss through :class:`_CachedGradients`, a function of every trainable
parameter whose backward hands each one its collected gradient, times the incoming gradient
(DeepSpeed's ``1 / gradient_accumulation_steps`` and any loss scale). So ``engine.backward``
accumulates every parameter's gradient exactly once, as after a plain forward: ZeRO-2, which
refuses a gradient reduced twice in one backward, and gradient accumulation over micro-steps
work unchanged, and the reported loss is the uncached loss.

ZeRO-3 is refused (:func:`refuse_zero3`). Its partitioned parameters hold their data only while
their submodule runs (gathered by its forward hooks, released after) and receive their
gradients through reduce-scatter hooks on partition-sized tensors; a function that returns
full-shape gradients for all parameters outside any forward does not fit that, and each chunk's
two forwards would gather every layer twice per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from retrieval.errors import ConfigError
from retrieval.training.rng_state import RngState

Inputs = dict[str, torch.Tensor]
# Chunk gradients of these are summed in float32: dozens of bf16 additions would round away
# what one backward over the whole batch keeps.
LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Encoding:
    """One input kind the loss reads: ``encode(inputs)`` run over ``chunk`` rows at a time."""

    encode: Callable[[Inputs], torch.Tensor]
    inputs: Inputs
    chunk: int


def refuse_zero3(ds_config: dict) -> None:
    """One line instead of a failure deep in DeepSpeed: see the module docstring for why."""
    if ds_config.get("zero_optimization", {}).get("stage", 0) == 3:
        raise ConfigError(
            "grad_cache does not work with ZeRO stage 3 (partitioned parameters); "
            "use stage 0-2 or turn grad_cache off"
        )


@contextmanager
def sparse_embedding_gradients(module: nn.Module) -> Iterator[None]:
    """Within: ``module``'s embedding tables get sparse gradients (the rows a chunk's tokens
    touched) from each chunk's backward, not dense table-sized ones. A plain step makes one
    dense table gradient; a cached step made one per chunk, each a zero fill and an add the
    size of the vocabulary (30522 x 384 for MiniLM, 250002 x 1024 = 1 GB for XLM-R large),
    and one more such tensor held while the chunk's gradients are summed. The sum is made
    dense once (:func:`widened`), so the step's gradient is unchanged."""
    tables = [m for m in module.modules() if isinstance(m, nn.Embedding) and not m.sparse]
    for table in tables:
        table.sparse = True
    try:
        yield
    finally:
        for table in tables:
            table.sparse = False


def trim_padding(inputs: Inputs) -> Inputs:
    """Drop trailing columns that are padding in every row: a chunk of short texts then runs
    at its own length, not the batch's. Only trailing ones, so positions do not move."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return inputs
    used = mask.any(dim=0).nonzero()
    width = int(used.max()) + 1 if used.numel() else mask.shape[1]
    if width == mask.shape[1]:
        return inputs
    full = mask.shape[1]
    return {
        k: v[:, :width] if v.dim() == 2 and v.shape[1] == full else v for k, v in inputs.items()
    }


def length_chunks(inputs: Inputs, size: int) -> tuple[list[Inputs], torch.Tensor | None]:
    """``inputs`` as chunks of ``size`` rows, shortest texts first, and the row order used
    (None: batch order). A chunk's cost follows its longest row; in batch order nearly every
    chunk has a long text, sorted only the last ones do. The loss sees every row either way,
    so the step's gradients do not change, only where padding is cut."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return split_rows(inputs, size), None
    order = torch.argsort(mask.sum(dim=1), stable=True)
    return split_rows({k: v[order] for k, v in inputs.items()}, size), order


def in_batch_order(rows: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Rows produced in ``order`` (from :func:`length_chunks`) put back in batch order."""
    if order is None:
        return rows
    restored = torch.empty_like(rows)
    restored[order] = rows
    return restored


def split_rows(inputs: Inputs, size: int) -> list[Inputs]:
    """``inputs`` (tensors with rows along dim 0) as chunks of ``size`` rows, each trimmed."""
    rows = next(iter(inputs.values())).shape[0]
    starts = range(0, rows, size)
    return [trim_padding({k: v[s : s + size] for k, v in inputs.items()}) for s in starts]


def cached_loss(
    encodings: Sequence[Encoding],
    loss_fn: Callable[..., torch.Tensor],
    params: Sequence[torch.Tensor],
    keep_last: int = 0,
) -> torch.Tensor:
    """``loss_fn(*embeddings)`` of the whole batch, whose backward gives ``params`` the
    gradients of the uncached step (passes 1-3 of the module docstring)."""
    chunks, orders = zip(*(length_chunks(e.inputs, e.chunk) for e in encodings))
    if not torch.is_grad_enabled():
        return loss_fn(*first_pass(encodings, chunks, orders, keep_last=0)[1])
    states, embeddings = first_pass(encodings, chunks, orders, keep_last)
    leaves = [e.requires_grad_() for e in embeddings]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
    cached = torch.autograd.grad(loss, [*leaves, *params], allow_unused=True)
    grads = [widened(g) for g in cached[len(leaves) :]]
    after = RngState.capture()
    for job in replay_order(encodings, chunks, orders, states, cached):
        replay(*job, params, grads)
    after.restore()  # the random draws go on from where the first pass left them
    # Only parameters the loss reached become inputs: as after a plain forward, the others
    # (an unused pooler) get no gradient and fire no DeepSpeed hook.
    reached = [(p, g) for p, g in zip(params, grads) if g is not None]
    return _CachedGradients.apply(loss.detach(), [g for _, g in reached], *[p for p, _ in reached])


def first_pass(
    encodings: Sequence[Encoding],
    chunks: Sequence[list[Inputs]],
    orders: Sequence[torch.Tensor | None],
    keep_last: int,
) -> tuple[list[list[RngState | torch.Tensor]], list[torch.Tensor]]:
    """Each chunk encoded without a graph, and the random-number state its forward began in;
    the embeddings in batch order. Each kind's last ``keep_last`` chunks (its longest texts)
    are encoded with their graphs, kept in place of their states, so pass 3 back-propagates
    them instead of encoding them again."""
    states, embeddings = [], []
    for encoding, pieces, order in zip(encodings, chunks, orders):
        side_states, outputs = [], []
        for i, inputs in enumerate(pieces):
            if i >= len(pieces) - keep_last:
                with torch.enable_grad():
                    kept = encoding.encode(inputs)
                side_states.append(kept)
                outputs.append(kept.detach())
                continue
            side_states.append(RngState.capture())
            with torch.no_grad():
                outputs.append(encoding.encode(inputs))
        states.append(side_states)
        embeddings.append(in_batch_order(torch.cat(outputs), order))
    return states, embeddings


def replay_order(
    encodings: Sequence[Encoding],
    chunks: Sequence[list[Inputs]],
    orders: Sequence[torch.Tensor | None],
    states: Sequence[list[RngState | torch.Tensor]],
    embedding_grads: Sequence[torch.Tensor | None],
) -> list[tuple]:
    """``(encode, inputs, state, cached gradient)`` of every chunk for pass 3, the chunks whose
    graphs pass 1 kept first (a stable sort): their activations are freed before any chunk is
    encoded again, so pass 3 holds the kept chunks or one re-encoded chunk, never both."""
    jobs = []
    for encoding, pieces, order, chunk_states, grad in zip(
        encodings, chunks, orders, states, embedding_grads
    ):
        if grad is not None:
            grad = grad if order is None else grad[order]  # the chunks' row order
            parts = grad.split(encoding.chunk)
            jobs += [(encoding.encode, *job) for job in zip(pieces, chunk_states, parts)]
    return sorted(jobs, key=lambda job: not isinstance(job[2], torch.Tensor))


def replay(
    encode: Callable[[Inputs], torch.Tensor],
    inputs: Inputs,
    state: RngState | torch.Tensor,
    cached: torch.Tensor,
    params: Sequence[torch.Tensor],
    grads: list[torch.Tensor | None],
) -> None:
    """Encode one chunk again with a graph, under its first pass's random state (or take the
    output pass 1 kept with its graph), and add its parameter gradient
    ``d sum(embeddings * cached) / d params`` into ``grads``."""
    if isinstance(state, torch.Tensor):
        output = state
    else:
        state.restore()
        with torch.enable_grad():
            output = encode(inputs)
    if not output.requires_grad:
        return
    chunk_grads = torch.autograd.grad(output, params, cached, allow_unused=True)
    for i, g in enumerate(chunk_grads):
        if g is not None:
            grads[i] = widened(g) if grads[i] is None else grads[i].add_(g)


def widened(grad: torch.Tensor | None) -> torch.Tensor | None:
    """A dense gradient to sum chunks into: float32 for half-precision parameters."""
    if grad is None:
        return None
    grad = grad.to_dense() if grad.is_sparse else grad
    return grad.float() if grad.dtype in LOW_PRECISION else grad


class _CachedGradients(torch.autograd.Function):
    """Forward: the loss value. Backward: each parameter's cached gradient times the incoming
    gradient, so one ``backward`` accumulates each parameter's gradient once (DeepSpeed)."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, grads: list, *params: torch.Tensor) -> torch.Tensor:
        ctx.grads, ctx.dtypes = grads, [p.dtype for p in params]
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple:
        grads, ctx.grads = ctx.grads, None  # freed as autograd takes them; a second backward
        if grads is None:  # would hand out nothing, so refuse it
            raise RuntimeError("a grad-cached loss can be back-propagated once")
        scaled = (g.mul_(upstream.to(g.dtype)).to(t) for g, t in zip(grads, ctx.dtypes))
        return (None, None, *scaled)
