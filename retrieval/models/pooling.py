"""Turning token states into one vector: the pooling modes a dual encoder can use.

Modes match sentence-transformers' where it has them, so exported models embed identically.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "first_last_avg", "weighted_mean")


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def pool(
    mode: str,
    last_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Pool ``[batch, tokens, dim]`` states into ``[batch, dim]``.

    - ``cls``: the first token's state (DPR, RocketQA).
    - ``mean``: mean over non-padding tokens (sentence-transformers' default).
    - ``first_last_avg``: mean over tokens of the average of the first and last layer
      (SimCSE / BERT-flow); needs ``hidden_states`` from ``output_hidden_states=True``.
    - ``weighted_mean``: mean with weights 1..n by position, as sentence-transformers'
      ``weightedmean`` (later tokens count more, which suits causal models).
    """
    if mode == "cls":
        return last_hidden[:, 0]
    if mode == "mean":
        return _masked_mean(last_hidden, attention_mask)
    if mode == "first_last_avg":
        if hidden_states is None:
            raise ValueError("first_last_avg pooling needs hidden_states (output_hidden_states)")
        # hidden_states[0] is the embedding layer; the first transformer layer is [1].
        return _masked_mean((hidden_states[1] + hidden_states[-1]) / 2, attention_mask)
    if mode == "weighted_mean":
        positions = torch.arange(1, last_hidden.shape[1] + 1, device=last_hidden.device)
        weights = attention_mask * positions.unsqueeze(0)
        return _masked_mean(last_hidden, weights)
    raise ValueError(f"unknown pooling mode '{mode}'; choose one of {', '.join(POOLING_MODES)}")
