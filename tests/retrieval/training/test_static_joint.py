"""train_joint with ``loss_args: {detach_teacher: true}`` (static distillation): the KL term
teaches the retriever only, so the re-ranker's gradient is that of its own listwise CE, and the
retriever's that of the KL; the same under gradient caching (configs/scifact.yaml caches).
Without the key (RocketQAv2's joint form) the KL reaches the re-ranker: the negative control."""

from __future__ import annotations

import pytest
import torch

from retrieval.losses import build_loss
from retrieval.training.cached_modules import with_grad_cache
from retrieval.training.config import JointGradCacheConfig, registered_loss, validate_train_config
from retrieval.training.modules import JointTrainingModule
from tests.retrieval.training.grad_cache_cases import (
    GROUP,
    cross_encoder,
    dual_encoder,
    gradients,
    joint_batch,
)
from tests.retrieval.training.test_loss_precision import kl_written_out, listwise_written_out


def same_gradients(got: dict, want: dict) -> None:
    """Equal to float64 rounding, and not all zero (the tiny re-ranker's are ~1e-4)."""
    assert got.keys() == want.keys()
    assert max(float(g.abs().max()) for g in want.values()) > 1e-5, "nothing to compare"
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12, msg=name)


def joint_loss(detach: bool | None):
    """The loss train_joint builds from a config whose ``loss_args`` set detach_teacher (or
    leave it out)."""
    raw = {"kind": "joint", "model": "m", "cross_model": "m", "output_dir": ".",
           "data": {"tables": "."}}  # fmt: skip
    if detach is not None:
        raw["loss_args"] = {"detach_teacher": detach}
    config = validate_train_config(raw)
    return build_loss(registered_loss(config.loss, config.kind), **config.loss_args)


def step_gradients(folder, detach: bool | None, cached: bool):
    dual, cross = dual_encoder(folder), cross_encoder(folder)
    module = JointTrainingModule(dual, cross, joint_loss(detach), GROUP).eval()
    batch = joint_batch(dual, cross)
    if cached:
        module = with_grad_cache(module, JointGradCacheConfig(query_chunk=2, passage_chunk=3,
                                                              pair_chunk=5))  # fmt: skip
    module(**batch).backward()
    return gradients(module), (dual, cross, batch)


def parts(grads: dict, prefix: str) -> dict:
    return {n: g for n, g in grads.items() if n.startswith(prefix)}


def written_out_gradients(dual, cross, batch) -> tuple[dict, dict]:
    """The re-ranker's gradient of its listwise CE alone, and the retriever's of the KL with
    the re-ranker's logits held fixed."""
    s_ce = cross(batch["pair_inputs"]).view(-1, GROUP)
    listwise_written_out(s_ce).backward()
    q, p = dual(batch["query_inputs"], batch["passage_inputs"])
    s_de = dual.score_lists(q, p.view(q.shape[0], GROUP, -1))
    kl_written_out(s_de, s_ce.detach()).backward()
    return ({f"cross.{n}": g for n, g in gradients(cross).items()},
            {f"dual.{n}": g for n, g in gradients(dual).items()})  # fmt: skip


@pytest.mark.parametrize("cached", [False, True], ids=["plain", "grad_cache"])
def test_static_distillation_trains_the_reranker_on_its_own_ce(tiny_bert_dir, cached):
    got, models = step_gradients(tiny_bert_dir, True, cached)
    for model in models[:2]:
        model.zero_grad(set_to_none=True)
    want_cross, want_dual = written_out_gradients(*models)
    same_gradients(parts(got, "cross."), want_cross)
    same_gradients(parts(got, "dual."), want_dual)


def test_joint_distillation_lets_the_kl_reach_the_reranker(tiny_bert_dir):
    got, models = step_gradients(tiny_bert_dir, None, cached=False)
    for model in models[:2]:
        model.zero_grad(set_to_none=True)
    want_cross, _ = written_out_gradients(*models)
    gap = max(float((got[n] - want_cross[n]).abs().max()) for n in want_cross)
    scale = max(float(g.abs().max()) for g in want_cross.values())
    assert gap > 0.01 * scale, (gap, scale)  # the KL's share of the re-ranker's gradient
