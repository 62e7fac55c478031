"""Weight averaging of fine-tuned models (a "model soup"): one model whose every weight is the
weighted mean of the same weight in several models.

Why: models fine-tuned from one checkpoint that differ only in seed (batch order, dropout) or in
a hyperparameter end in one basin of the loss, and the mean of their weights often scores above
each of them (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned
models improves accuracy without increasing inference time", arXiv:2203.05482; FlagEmbedding's
LM-Cocktail merges embedding models the same way). The result costs what one model costs at
inference. Averaging models that do not share a starting checkpoint gives noise, and nothing
here can tell: that is the caller's to know. Dual encoders and cross-encoders (the re-ranker's
classifier head included) average alike; one of each does not.

Holds the averaging only; loading folders and the CLI live in pipelines/commands/average.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict

import torch

from retrieval.models import CrossEncoder, DualEncoder

Model = DualEncoder | CrossEncoder


def soup_weights(count: int, weights: Sequence[float] | None = None) -> list[float]:
    """``weights`` scaled to sum to 1 (equal weights when None); none negative, not all 0."""
    if count < 2:
        raise ValueError(f"averaging needs at least 2 models, got {count}")
    raw = [1.0] * count if weights is None else [float(w) for w in weights]
    if len(raw) != count:
        raise ValueError(f"{len(raw)} weights for {count} models")
    if min(raw) < 0 or sum(raw) <= 0:
        raise ValueError(f"weights must be >= 0 and not all 0, got {raw}")
    total = sum(raw)
    return [w / total for w in raw]


class _RunningMean:
    """Float64 running weighted sum of state dicts, checked key by key against the first."""

    def __init__(self, first: dict[str, torch.Tensor], weight: float):
        self.sums = {k: _scaled(v, weight) for k, v in first.items()}
        self.first = first

    def add(self, state: dict[str, torch.Tensor], weight: float, index: int) -> None:
        if state.keys() != self.sums.keys():
            extra = sorted(state.keys() ^ self.sums.keys())[:3]
            raise ValueError(f"model {index} has other weights than model 0 (e.g. {extra})")
        for key, value in state.items():
            ref = self.first[key]
            if value.shape != ref.shape:
                raise ValueError(
                    f"model {index}: {key} has shape {tuple(value.shape)}, "
                    f"model 0 {tuple(ref.shape)}"
                )
            if value.is_floating_point():
                self.sums[key] += _scaled(value, weight)
            elif not torch.equal(value, ref):  # integer buffers (ids) cannot be averaged
                raise ValueError(f"model {index}: {key} differs from model 0 and is not float")

    def result(self, key: str) -> torch.Tensor:
        return self.sums[key].to(self.first[key].dtype)


def _scaled(value: torch.Tensor, weight: float) -> torch.Tensor:
    if not value.is_floating_point():
        return value.clone()
    return value.detach().to(torch.float64) * weight


def average_models(models: Iterable[Model], weights: Sequence[float]) -> Model:
    """The first model with every float weight replaced by ``sum_i weights[i] * w_i``.

    ``models`` is consumed one at a time, so only the first model and a float64 running sum are
    held (not all N). The models must have the same settings (pooling, normalisation, lengths,
    prefixes) and the same weight names and shapes; ``weights`` must already sum to 1
    (``soup_weights``).
    """
    base, running, count = None, None, 0
    for index, model in enumerate(models):
        if index >= len(weights):
            raise ValueError(f"more models than the {len(weights)} weights")
        count += 1
        if base is None:
            base, running = model, _RunningMean(_tensors(model), weights[0])
            continue
        _check_same_settings(base, model, index)
        running.add(_tensors(model), weights[index], index)
    if count != len(weights):
        raise ValueError(f"{len(weights)} weights for {count} models")
    with torch.no_grad():
        for name, tensor in _tensors(base).items():
            tensor.copy_(running.result(name))
    return base


def _tensors(model: Model) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, each once: a shared query/passage tower appears in a
    state dict under both names, and would be summed twice."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _check_same_settings(base: Model, model: Model, index: int) -> None:
    if type(model) is not type(base):
        raise ValueError(
            f"model {index} is a {type(model).__name__}, model 0 a {type(base).__name__}: "
            "only models of one kind can be averaged"
        )
    ours, theirs = asdict(base.settings), asdict(model.settings)
    for key, value in ours.items():
        if theirs[key] != value:
            raise ValueError(
                f"model {index} has {key} = {theirs[key]!r}, model 0 {value!r}: "
                "only models that encode the same way can be averaged"
            )
