"""Pair training (``kind: pair``) assembled for the one training loop: the dual encoder, the pair
loss chosen by name, the optional projector and queue, the collator, and the model card's facts.

Holds only the assembly; the loop (loop.py) runs it as it runs every other kind.
"""

from __future__ import annotations

from retrieval import distributed
from retrieval.losses import MoCoQueue, build_loss
from retrieval.models.dual_encoder import DualEncoder
from retrieval.tables.store import read_manifest, table_exists
from retrieval.training.collators import PairCollator
from retrieval.training.config import PairConfig, registered_loss
from retrieval.training.modules import PairTrainingModule
from retrieval.training.pair_objectives import PAIR_OBJECTIVES
from retrieval.training.pairs import PairStore, pairs_dir
from retrieval.training.projector import Projector


def pair_loss(config: PairConfig, model: DualEncoder, dim: int):
    """The loss named by ``config.loss``; infonce takes the model's temperature and similarity
    unless ``loss_args`` set them, sbert_softmax's head is sized to the vectors it reads."""
    defaults: dict = {}
    if config.loss == "infonce":
        defaults = {"temperature": model.settings.temperature}
        defaults["similarity"] = model.settings.similarity
    if config.loss == "sbert_softmax":
        defaults = {"dim": dim}
    return build_loss(registered_loss(config.loss), **{**defaults, **config.loss_args})


def build_pair_training(config: PairConfig, pairs: PairStore):
    """``(module, collate, models)`` as loop.build expects; only the encoder is exported."""
    model = DualEncoder.from_pretrained(config.model, **config.model_settings.overrides())
    projector = None
    if config.projector is not None:
        settings = config.projector
        projector = Projector(model.dim, settings.hidden_dim, settings.out_dim)
    dim = projector.out_dim if projector is not None else model.dim
    queue = None
    if config.queue is not None:
        queue = MoCoQueue(config.queue_rows(distributed.world_size()), dim)
    loss = pair_loss(config, model, dim)
    module = PairTrainingModule(model, loss, PAIR_OBJECTIVES[config.loss], projector, queue)
    return module, PairCollator(model, pairs), {"model": model}


def open_pairs(config: PairConfig) -> PairStore:
    return PairStore(pairs_dir(config), pairs_dir(config).parent / "hf_cache_pairs")


def pair_card_facts(config: PairConfig, summary: dict, world: int) -> dict:
    """The model card's training settings of a pair run (labels as the data step read them)."""
    meta, data = open_pairs_meta(config), config.data
    facts = {
        "training kind": "pair",
        "loss": config.loss,
        "loss arguments": config.loss_args,
        "training data": meta.get("source", str(data.pairs or data.sentences or data.tables)),
        "split": data.split,
        "examples": meta.get("kind", "pairs"),
        "label range (scaled to 0-1)": meta.get("label_range"),
        "positive at label >=": meta.get("positive_at"),
        "steps": summary["steps"],
        "epochs": config.epochs,
        "examples per step": f"{config.batch_size} x {world} workers",
        "learning rate": config.lr,
        "warm-up ratio": config.warmup_ratio,
        "projector (training only, not exported)": (
            config.projector.model_dump() if config.projector is not None else None
        ),
        "queue of past embeddings": (
            config.queue_rows(world) if config.queue is not None else None
        ),
        "model settings": config.model_settings.overrides(),
        "seed": config.seed,
        "final loss": summary["final_loss"],
    }
    return {k: v for k, v in facts.items() if v is not None}


def open_pairs_meta(config: PairConfig) -> dict:
    """What the data step recorded about the pairs (source, label range, positive_at)."""
    folder = pairs_dir(config)
    return read_manifest(folder)["meta"] if table_exists(folder) else {}
