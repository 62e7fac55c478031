"""The re-ranker's head learning rate: which parameters get it, and that AdamW applies it."""

from __future__ import annotations

import pytest
import torch

from retrieval.losses import ListwiseCELoss
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.training.modules import CrossTrainingModule, DualTrainingModule
from retrieval.training.optimizer import param_groups


def test_head_group_holds_exactly_pooler_and_classifier(tiny_bert_dir):
    cross = CrossEncoder.from_pretrained(tiny_bert_dir)
    module = CrossTrainingModule(cross, ListwiseCELoss(), group_size=2)
    body, head = param_groups(module, lr=1e-5, weight_decay=0.01, head_lr=1e-3)
    head_names = {n for n, p in module.named_parameters() if any(p is q for q in head["params"])}
    expected = {n for n, _ in module.named_parameters() if ".classifier." in n or ".pooler." in n}
    assert head_names == expected and expected
    assert (body["lr"], head["lr"]) == (1e-5, 1e-3)
    assert len(body["params"]) + len(head["params"]) == len(list(module.parameters()))


def test_without_head_lr_there_is_one_group(tiny_bert_dir):
    module = CrossTrainingModule(CrossEncoder.from_pretrained(tiny_bert_dir), ListwiseCELoss(), 2)
    (group,) = param_groups(module, lr=2e-5, weight_decay=0.0, head_lr=None)
    assert len(group["params"]) == len(list(module.parameters())) and group["lr"] == 2e-5


def test_head_lr_on_a_dual_encoder_is_an_error(tiny_bert_dir):
    dual = DualTrainingModule(DualEncoder.from_pretrained(tiny_bert_dir), torch.nn.Identity())
    with pytest.raises(ValueError, match="no cross-encoder head"):
        param_groups(dual, lr=2e-5, weight_decay=0.0, head_lr=1e-3)


def test_adamw_moves_the_head_by_its_own_learning_rate(tiny_bert_dir):
    """One AdamW step moves each weight by about its group's lr (Adam's first step is lr * sign
    of the gradient, weight decay aside)."""
    torch.manual_seed(0)
    cross = CrossEncoder.from_pretrained(tiny_bert_dir)
    module = CrossTrainingModule(cross, ListwiseCELoss(), group_size=2)
    groups = param_groups(module, lr=1e-5, weight_decay=0.0, head_lr=1e-2)
    optimizer = torch.optim.AdamW(groups)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    inputs = cross.tokenize(["q", "q"], ["t", "u"], ["a passage", "another one"])
    module(inputs).backward()
    optimizer.step()
    weight = "model.model.classifier.weight"
    head_step = (module.get_parameter(weight) - before[weight]).abs().max().item()
    layer = "model.model.bert.encoder.layer.0.attention.self.query.weight"
    body_step = (module.get_parameter(layer) - before[layer]).abs().max().item()
    assert head_step == pytest.approx(1e-2, rel=1e-2)
    assert body_step == pytest.approx(1e-5, rel=1e-2)
