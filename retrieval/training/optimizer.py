"""Parameter groups for the optimizer: the re-ranker's new scoring head may learn faster.

A cross-encoder started from an encoder checkpoint (a sentence embedding model, or the dual
encoder of an earlier stage) gets a freshly initialised pooler and classifier. At the encoder's
learning rate (2e-5 to 5e-5) that head hardly moves in the few hundred steps a small dataset
gives, so the re-ranker's logits stay near their starting point and its probabilities near 0.5:
too unsure for RocketQA's denoising thresholds. A larger head learning rate fixes that without
shaking the pre-trained encoder. The same holds for RetroMAE's masked-LM head (fresh when the
base model was saved without one) and its decoder: a module names such training-only parts in
``head_parameters()``.

In a joint stage (RocketQAv2) one optimizer trains the retriever and the re-ranker. The
re-ranker was trained at its own, larger learning rate in train_cross; at the retriever's it
hardly moves in the joint stage's few steps. ``cross_lr`` gives every re-ranker parameter its own
rate (its head too, unless ``head_lr`` is set).
"""

from __future__ import annotations

from torch import nn

from retrieval.models.cross_encoder import CrossEncoder

HEAD_PARTS = ("classifier", "pooler")
HEAD_WHAT = "cross-encoder head (or RetroMAE head)"


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


def cross_parameter_ids(module: nn.Module) -> set[int]:
    """ids of every parameter of every CrossEncoder inside ``module``."""
    return {
        id(param)
        for sub in module.modules()
        if isinstance(sub, CrossEncoder)
        for param in sub.parameters()
    }


def param_groups(
    module: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr: float | None,
    cross_lr: float | None = None,
) -> list[dict]:
    """One group at ``lr``; with ``cross_lr`` the re-ranker's parameters in a group of their
    own, and with ``head_lr`` its head (or RetroMAE's) in another. Empty groups are left out."""
    params = [p for p in module.parameters() if p.requires_grad]
    head = _ids_or_refuse(head_lr, head_parameter_ids, module, "head_lr", HEAD_WHAT)
    cross = _ids_or_refuse(cross_lr, cross_parameter_ids, module, "cross_lr", "cross-encoder")
    cross -= head
    groups = [
        ("model", lr, [p for p in params if id(p) not in head and id(p) not in cross]),
        ("reranker", cross_lr, [p for p in params if id(p) in cross]),
        ("head", head_lr, [p for p in params if id(p) in head]),
    ]
    return [
        {"params": group, "lr": rate, "weight_decay": weight_decay, "name": name}
        for name, rate, group in groups
        if group
    ]


def learning_rates(optimizer_groups: list[dict]) -> dict[str, float]:
    """The rates to log: ``lr``, the first group's (the model's; a joint run's retriever's),
    and ``lr/<name>`` for each group after it, so a run with ``cross_lr`` or ``head_lr`` shows
    every schedule it follows."""
    rates = {"lr": optimizer_groups[0]["lr"]}
    for number, group in enumerate(optimizer_groups[1:], start=1):
        rates[f"lr/{group.get('name', number)}"] = group["lr"]
    return rates


def _ids_or_refuse(rate, ids_of, module: nn.Module, key: str, what: str) -> set[int]:
    """The parameters a separate rate applies to (none when it is unset); an error when it is
    set and the model has no such parameters."""
    if rate is None:
        return set()
    ids = ids_of(module)
    if not ids:
        raise ValueError(f"{key} is set but the model has no {what} to apply it to")
    return ids
