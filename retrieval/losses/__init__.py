"""RQA's training losses, one per module, all taking embeddings or scores (never models).

This file only re-exports them and maps config names to classes; no loss is defined here.
"""

from __future__ import annotations

from torch import nn

from retrieval.losses.circle import CircleLoss
from retrieval.losses.contrastive import InfoNCELoss
from retrieval.losses.cosent import CoSENTLoss
from retrieval.losses.cosine_mse import CosineMSELoss
from retrieval.losses.cross_batch import CrossBatchInfoNCELoss
from retrieval.losses.distillation import JointListwiseLoss, ListwiseKLDistillationLoss
from retrieval.losses.listwise import ListwiseCELoss, PointwiseBCELoss
from retrieval.losses.margin_mse import JointMarginMSELoss, MarginMSELoss
from retrieval.losses.masked_lm import MaskedLMLoss
from retrieval.losses.moco_queue import MoCoQueue
from retrieval.losses.multilabel_ce import MultiLabelCELoss
from retrieval.losses.sbert_softmax import SBERTSoftmaxLoss
from retrieval.losses.simcse import SimCSELoss
from retrieval.losses.teacher_kl import ListwiseCETeacherKLLoss

# Config name -> loss class. Hard negatives are InfoNCE with H > 0; the MoCo queue is not a
# loss but a source of ``extra_negatives`` for "infonce" / "cross_batch".
LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "cross_batch": CrossBatchInfoNCELoss,
    "cosent": CoSENTLoss,
    "simcse": SimCSELoss,
    "listwise_ce": ListwiseCELoss,
    "pointwise_bce": PointwiseBCELoss,
    "listwise_ce_kl": ListwiseCETeacherKLLoss,
    "listwise_kl": ListwiseKLDistillationLoss,
    "joint_listwise": JointListwiseLoss,
    "margin_mse": MarginMSELoss,
    "joint_margin_mse": JointMarginMSELoss,
    "cosine_mse": CosineMSELoss,
    "sbert_softmax": SBERTSoftmaxLoss,
    "circle": CircleLoss,
    "multilabel_ce": MultiLabelCELoss,
    "masked_lm": MaskedLMLoss,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate the loss registered as ``name`` with ``kwargs`` (e.g. from a config)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)


__all__ = [
    "LOSSES",
    "CircleLoss",
    "CoSENTLoss",
    "CosineMSELoss",
    "CrossBatchInfoNCELoss",
    "InfoNCELoss",
    "JointListwiseLoss",
    "JointMarginMSELoss",
    "ListwiseCELoss",
    "ListwiseCETeacherKLLoss",
    "ListwiseKLDistillationLoss",
    "MarginMSELoss",
    "MaskedLMLoss",
    "MoCoQueue",
    "MultiLabelCELoss",
    "PointwiseBCELoss",
    "SBERTSoftmaxLoss",
    "SimCSELoss",
    "build_loss",
]
