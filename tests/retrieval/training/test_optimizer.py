"""The re-ranker's head learning rate: which parameters get it, and that AdamW applies it."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import yaml

from retrieval.losses import ListwiseCELoss
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.training.modules import CrossTrainingModule, DualTrainingModule, JointTrainingModule
from retrieval.training.optimizer import learning_rates, param_groups
from tests.helpers_dist import run_on_ranks
from tests.retrieval.training.grad_cache_cases import cross_encoder, dual_encoder
from tests.retrieval.training.test_grad_cache import _train, needs_gloo


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


def _joint(tiny_bert_dir) -> JointTrainingModule:
    dual, cross = (
        DualEncoder.from_pretrained(tiny_bert_dir),
        CrossEncoder.from_pretrained(tiny_bert_dir),
    )
    return JointTrainingModule(dual, cross, torch.nn.Identity(), group_size=2)


def _names(module, group) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in module.named_parameters() if id(p) in ids}


def test_cross_lr_puts_every_reranker_parameter_in_its_own_group(tiny_bert_dir):
    module = _joint(tiny_bert_dir)
    retriever, reranker = param_groups(module, 2e-5, 0.0, head_lr=None, cross_lr=2e-4)
    assert _names(module, reranker) == {
        n for n, _ in module.named_parameters() if n[:6] == "cross."
    }
    assert _names(module, retriever) == {
        n for n, _ in module.named_parameters() if n[:5] == "dual."
    }
    assert (retriever["lr"], reranker["lr"]) == (2e-5, 2e-4)


def test_head_lr_takes_the_head_out_of_the_cross_lr_group(tiny_bert_dir):
    module = _joint(tiny_bert_dir)
    retriever, body, head = param_groups(module, 2e-5, 0.0, head_lr=1e-3, cross_lr=2e-4)
    assert [g["lr"] for g in (retriever, body, head)] == [2e-5, 2e-4, 1e-3]
    assert _names(module, head) == {
        n
        for n, _ in module.named_parameters()
        if n.startswith("cross.") and (".classifier." in n or ".pooler." in n)
    }
    assert not _names(module, body) & _names(module, head)
    assert sum(len(g["params"]) for g in (retriever, body, head)) == len(list(module.parameters()))


def test_cross_lr_on_a_dual_encoder_is_an_error(tiny_bert_dir):
    dual = DualTrainingModule(DualEncoder.from_pretrained(tiny_bert_dir), torch.nn.Identity())
    with pytest.raises(ValueError, match="cross_lr is set but the model has no cross-encoder"):
        param_groups(dual, lr=2e-5, weight_decay=0.0, head_lr=None, cross_lr=1e-3)


@needs_gloo
def test_a_joint_run_trains_the_reranker_at_cross_lr(tmp_path, scifact_tables, tiny_bert_dir):
    """train_worker end to end: one AdamW step (no warm-up) moves each weight by about its
    group's lr, so the exported re-ranker moved by cross_lr and the retriever by lr."""
    config = {
        "kind": "joint", "model": str(tiny_bert_dir), "cross_model": str(tiny_bert_dir),
        "output_dir": str(tmp_path / "out"),
        "data": {"tables": str(scifact_tables), "max_examples": 8},
        "batch_size": 4, "group_size": 2, "max_steps": 1, "random_negatives": True,
        "lr": 1e-7, "cross_lr": 1e-2, "warmup_ratio": 0.0, "weight_decay": 0.0, "log_every": 1,
        "cross_max_len": 64, "model_settings": {"query_max_len": 24, "passage_max_len": 48},
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    run_on_ranks(partial(_train, str(path)), 1, str(tmp_path))
    out = tmp_path / "out"
    assert _largest_step(cross_encoder, tiny_bert_dir, out / "cross_model") == pytest.approx(
        1e-2, rel=0.05
    )
    assert _largest_step(dual_encoder, tiny_bert_dir, out / "model") < 2e-7
    (record,) = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"lr", "lr/reranker"} <= record.keys()  # both schedules, at 0 after the last step


def _largest_step(load, start_dir, trained_dir) -> float:
    """The largest change of a weight the start checkpoint holds (a re-ranker's classifier is
    initialised afresh at each load)."""
    start = load(start_dir, torch.float32).state_dict()
    trained = load(trained_dir, torch.float32).state_dict()
    return max(float((trained[k] - start[k]).abs().max()) for k in start if "classifier" not in k)


def test_every_group_s_rate_is_logged_under_its_name(tiny_bert_dir):
    """Each group's current rate (as a schedule leaves it) under the name of its group."""
    optimizer = torch.optim.AdamW(
        param_groups(_joint(tiny_bert_dir), 2e-5, 0.0, head_lr=1e-3, cross_lr=2e-4)
    )
    for group in optimizer.param_groups:  # a schedule at half its peak
        group["lr"] /= 2
    assert learning_rates(optimizer.param_groups) == pytest.approx(
        {"lr": 1e-5, "lr/reranker": 1e-4, "lr/head": 5e-4}
    )
    (one,) = param_groups(_joint(tiny_bert_dir), 2e-5, 0.0, head_lr=None)
    assert learning_rates([one]) == {"lr": 2e-5}
