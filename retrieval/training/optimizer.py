"""Parameter groups for the optimizer: the re-ranker's new scoring head may learn faster.

A cross-encoder started from an encoder checkpoint (a sentence embedding model, or the dual
encoder of an earlier stage) gets a freshly initialised pooler and classifier. At the encoder's
learning rate (2e-5 to 5e-5) that head hardly moves in the few hundred steps a small dataset
gives, so the re-ranker's logits stay near their starting point and its probabilities near 0.5:
too unsure for RocketQA's denoising thresholds. A larger head learning rate fixes that without
shaking the pre-trained encoder. The same holds for RetroMAE's masked-LM head (fresh when the
base model was saved without one) and its decoder: a module names such training-only parts in
``head_parameters()``.
"""

from __future__ import annotations

from torch import nn

from retrieval.models.cross_encoder import CrossEncoder

HEAD_PARTS = ("classifier", "pooler")


def head_parameter_ids(module: nn.Module) -> set[int]:
    """ids of the pooler and classifier parameters of every CrossEncoder inside ``module``, and
    of what a submodule's ``head_parameters()`` names."""
    ids: set[int] = set()
    for sub in module.modules():
        named = getattr(sub, "head_parameters", None)
        if callable(named):
            ids.update(id(param) for param in named())
        if isinstance(sub, CrossEncoder):
            for name, param in sub.named_parameters():
                if any(part in name.split(".") for part in HEAD_PARTS):
                    ids.add(id(param))
    return ids


def param_groups(
    module: nn.Module, lr: float, weight_decay: float, head_lr: float | None
) -> list[dict]:
    """One group at ``lr``, or two when ``head_lr`` is set: the re-ranker head at ``head_lr``."""
    params = [p for p in module.parameters() if p.requires_grad]
    if head_lr is None:
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]
    head = head_parameter_ids(module)
    if not head:
        raise ValueError(
            "head_lr is set but the model has no cross-encoder head (or RetroMAE head) to apply "
            "it to"
        )
    return [
        {"params": [p for p in params if id(p) not in head], "lr": lr,
         "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in head], "lr": head_lr,
         "weight_decay": weight_decay},
    ]  # fmt: skip
