"""Turning token states into one vector: the pooling modes a dual encoder can use.

Modes match sentence-transformers' where it has them, so exported models embed identically.
Holds only arithmetic on token states; which tokens a text becomes is the dual encoder's business.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "first_last_avg", "weighted_mean", "prompt")
# Modes that average over tokens, so a prefix can be left out of the average (INSTRUCTOR).
AVERAGING_MODES = ("mean", "first_last_avg", "weighted_mean")


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def exclude_prefix(attention_mask: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    """A copy of ``attention_mask`` ``[batch, tokens]`` with each row's first ``prefix_tokens``
    real tokens set to 0 (after any left padding), so pooling skips an instruction prefix.

    As sentence-transformers' ``include_prompt=False``: the model still attends to the prefix;
    only the average leaves it out. Positions keep their numbers (``weighted_mean`` weights).
    """
    if prefix_tokens <= 0:
        return attention_mask
    first = attention_mask.to(torch.int32).argmax(dim=1, keepdim=True)  # first real token
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return attention_mask.masked_fill(positions.unsqueeze(0) < first + prefix_tokens, 0)


def pool(
    mode: str,
    last_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
    input_ids: torch.Tensor | None = None,
    mask_token_id: int | None = None,
) -> torch.Tensor:
    """Pool ``[batch, tokens, dim]`` states into ``[batch, dim]``.

    - ``cls``: the first token's state (DPR, RocketQA).
    - ``mean``: mean over non-padding tokens (sentence-transformers' default).
    - ``first_last_avg``: mean over tokens of the average of the first and last layer
      (SimCSE / BERT-flow); needs ``hidden_states`` from ``output_hidden_states=True``.
    - ``weighted_mean``: mean with weights 1..n by position, as sentence-transformers'
      ``weightedmean`` (later tokens count more, which suits causal models; SGPT).
    - ``prompt``: the state of the last ``[MASK]`` token of each row (PromptBERT: the text sits
      in a template such as ``This sentence : "[X]" means [MASK] .``); needs ``input_ids`` and
      ``mask_token_id``. The template's ``[MASK]`` comes after the text, so the last one is the
      template's even when a text holds the string ``[MASK]`` itself.
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
    if mode == "prompt":
        if input_ids is None or mask_token_id is None:
            raise ValueError("prompt pooling needs input_ids and the tokenizer's mask_token_id")
        is_mask = (input_ids == mask_token_id) & attention_mask.bool()
        if not bool(is_mask.any(dim=1).all()):
            raise ValueError("prompt pooling: a row holds no [MASK] token (template not applied)")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last_mask = (is_mask * (positions + 1)).argmax(dim=1)
        return last_hidden[torch.arange(last_hidden.shape[0], device=last_hidden.device), last_mask]
    raise ValueError(f"unknown pooling mode '{mode}'; choose one of {', '.join(POOLING_MODES)}")
