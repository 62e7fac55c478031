"""Losses in float32 under a bf16 module: each training module's loss equals the loss written
out in float64 from the same bf16 embeddings / logits, to 1e-6 of the scores' scale (float32
resolves a score of 100 to about 1e-5), and a negative control shows that the same formula in
bf16 (what the modules computed before) is off by orders of magnitude more."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retrieval.losses import InfoNCELoss, JointListwiseLoss, ListwiseCELoss
from retrieval.models import DualEncoder
from retrieval.training.modules import (
    CrossTrainingModule,
    DualTrainingModule,
    JointTrainingModule,
)
from tests.retrieval.training.grad_cache_cases import GROUP, cross_encoder, dual_batch, joint_batch

BF16 = torch.bfloat16


def msmarco_style_dual(folder) -> DualEncoder:
    """As configs/msmarco.yaml scores: unnormalised CLS vectors, dot product, temperature 1;
    the tiny model's vectors are scaled up to BERT-base's dot products (~100)."""
    model = DualEncoder.from_pretrained(
        folder, pooling="cls", normalize=False, similarity="dot", temperature=1.0
    )
    with torch.no_grad():  # LayerNorm's gain sets the vectors' scale
        model.query_model.encoder.layer[-1].output.LayerNorm.weight.mul_(4.0)
    return model.to(BF16).eval()


def infonce_written_out(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``1/B sum_i -log softmax(q_i . p_j)[i*GROUP]`` in ``q``'s dtype, step by step."""
    scores = q @ p.T
    targets = torch.arange(q.shape[0]) * GROUP
    log_norm = torch.logsumexp(scores, dim=1)
    return (log_norm - scores[torch.arange(q.shape[0]), targets]).mean()


def listwise_written_out(logits: torch.Tensor) -> torch.Tensor:
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def kl_written_out(s_de: torch.Tensor, s_ce: torch.Tensor) -> torch.Tensor:
    """Mean over lists of ``sum_p P_de log(P_de / P_ce)``."""
    p_de = torch.exp(s_de - torch.logsumexp(s_de, 1, keepdim=True))
    log_ratio = (s_de - torch.logsumexp(s_de, 1, keepdim=True)) - (
        s_ce - torch.logsumexp(s_ce, 1, keepdim=True)
    )
    return (p_de * log_ratio).sum(1).mean()


def assert_fp32_not_bf16(loss, exact, in_bf16, scale: float) -> None:
    """``loss`` within 1e-6 x ``scale`` (the largest score) of ``exact``; ``in_bf16`` not."""
    assert loss.dtype == torch.float32 and exact.dtype == torch.float64
    tolerance = 1e-6 * max(1.0, scale)
    assert abs(float(loss) - float(exact)) <= tolerance, (float(loss), float(exact))
    assert abs(float(in_bf16) - float(exact)) > 1000 * tolerance, (float(in_bf16), float(exact))


def test_dual_loss_is_float32_under_a_bf16_encoder(tiny_bert_dir):
    model = msmarco_style_dual(tiny_bert_dir)
    batch = dual_batch(model)
    module = DualTrainingModule(model, InfoNCELoss(temperature=1.0, similarity="dot"))
    with torch.no_grad():
        loss = module(**batch)
        q, p = model(**batch)
    scale = float((q.double() @ p.double().T).abs().max())
    assert q.dtype == BF16 and scale > 50
    assert_fp32_not_bf16(
        loss, infonce_written_out(q.double(), p.double()), infonce_written_out(q, p), scale
    )


def test_cross_listwise_loss_is_float32_under_a_bf16_reranker(tiny_bert_dir):
    cross = cross_encoder(tiny_bert_dir, torch.float32)
    with torch.no_grad():  # a head that gives logits of a trained re-ranker's spread (~10)
        cross.model.classifier.weight.normal_(0.0, 3.0)
    cross = cross.to(BF16).eval()
    batch = joint_batch(msmarco_style_dual(tiny_bert_dir), cross)
    module = CrossTrainingModule(cross, ListwiseCELoss(), GROUP)
    with torch.no_grad():
        loss = module(batch["pair_inputs"])
        logits = cross(batch["pair_inputs"]).view(-1, GROUP)
    assert logits.dtype == BF16
    scale = float(logits.abs().max())
    exact = listwise_written_out(logits.double())
    assert_fp32_not_bf16(loss, exact, listwise_written_out(logits), scale)


def joint_losses_under_bf16(tiny_bert_dir, loss, teacher_term) -> tuple:
    """A joint module's ``loss`` with bf16 models, then the written-out loss (``teacher_term``
    of the retriever's and re-ranker's scores + the re-ranker's listwise CE) from the same
    embeddings and logits in float64 and in bf16, and the scores' scale."""
    dual = msmarco_style_dual(tiny_bert_dir)
    cross = cross_encoder(tiny_bert_dir, torch.float32)
    with torch.no_grad():
        cross.model.classifier.weight.normal_(0.0, 3.0)
    cross = cross.to(BF16).eval()
    batch = joint_batch(dual, cross)
    module = JointTrainingModule(dual, cross, loss, GROUP)
    with torch.no_grad():
        value = module(**batch)
        q, p = dual(batch["query_inputs"], batch["passage_inputs"])
        logits = cross(batch["pair_inputs"]).view(-1, GROUP)

    def written_out(q, p, logits):
        s_de = torch.einsum("qd,qnd->qn", q, p.view(q.shape[0], GROUP, -1))
        return teacher_term(s_de, logits) + listwise_written_out(logits)

    exact = written_out(q.double(), p.double(), logits.double())
    scale = float((q.double() @ p.double().T).abs().max())
    return value, exact, written_out(q, p, logits), scale


def test_joint_loss_is_float32_under_bf16_models(tiny_bert_dir):
    assert_fp32_not_bf16(
        *joint_losses_under_bf16(tiny_bert_dir, JointListwiseLoss(), kl_written_out)
    )


def test_the_bf16_sbert_softmax_head_takes_float32_vectors():
    from retrieval.losses import build_loss

    loss = build_loss("sbert_softmax", dim=4, num_labels=3).to(BF16)
    u, v = torch.randn(5, 4), torch.randn(5, 4)
    value = loss(u, v, torch.tensor([0, 1, 2, 0, 1]))
    assert value.dtype == torch.float32
    logits = loss.logits(u, v)
    head = loss.classifier
    want = F.linear(torch.cat([u, v, (u - v).abs()], -1).to(BF16), head.weight, head.bias)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, want.float(), rtol=0, atol=0)
