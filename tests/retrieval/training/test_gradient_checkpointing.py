"""gradient_checkpointing: the encoders recompute their activations in backward (a layer runs
twice per step) and the gradients are those of the plain step."""

from __future__ import annotations

import warnings

import torch

from retrieval.losses import InfoNCELoss
from retrieval.models import DualEncoder
from retrieval.training.loop import checkpoint_activations


def one_step(model: DualEncoder) -> tuple[dict[str, torch.Tensor], int]:
    """Parameter gradients of one InfoNCE step, and how often layer 0's attention ran."""
    calls = []
    attention = model.query_model.encoder.layer[0].attention  # inside the checkpointed forward
    hook = attention.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    torch.manual_seed(0)  # the same dropout masks in both models
    queries = model.tokenize_queries(["what do cats eat", "how tall is everest"])
    passages = model.tokenize_passages(["Cats", "Everest"], ["Cats eat fish.", "It is 8849 m."])
    q, p = model(queries, passages)
    InfoNCELoss(temperature=0.05)(q, p).backward()
    hook.remove()
    return {n: t.grad.clone() for n, t in model.named_parameters() if t.grad is not None}, len(
        calls
    )


def checkpointing_is_on(tower) -> bool:
    """transformers >= 5.25 names it is_activation_checkpointing (the old name warns)."""
    if hasattr(type(tower), "is_activation_checkpointing"):
        return tower.is_activation_checkpointing
    return tower.is_gradient_checkpointing


def test_checkpointed_step_has_the_plain_gradients_and_recomputes(tiny_bert_dir):
    plain = DualEncoder.from_pretrained(tiny_bert_dir).double()
    checkpointed = DualEncoder.from_pretrained(tiny_bert_dir).double()
    with warnings.catch_warnings():  # no deprecated transformers name on the way
        warnings.simplefilter("error", FutureWarning)
        checkpoint_activations({"model": checkpointed})
    assert checkpointing_is_on(checkpointed.query_model)
    expected, plain_calls = one_step(plain)
    got, checkpointed_calls = one_step(checkpointed)
    assert plain_calls == 2  # queries and passages, forward only
    assert checkpointed_calls == 4  # and once more each in backward
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-12, msg=name)
