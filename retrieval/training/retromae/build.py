"""RetroMAE training (``kind: retromae``) assembled for the one training loop: the encoder as a
dual encoder (so export writes a plain encoder folder), the shared vocabulary head, the
decoder, the masking collator, and the model card's facts.

Holds only the assembly; the loop (retrieval/training/loop.py) runs it as every other kind.
"""

from __future__ import annotations

from retrieval.losses import build_loss
from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.config import RetroMAEConfig
from retrieval.training.passages import PassageStore
from retrieval.training.retromae.decoder import SentenceDecoder
from retrieval.training.retromae.masking import RetroMAECollator
from retrieval.training.retromae.mlm_head import masked_lm_head
from retrieval.training.retromae.module import RetroMAETrainingModule


def build_retromae_training(config: RetroMAEConfig, store: PassageStore):
    """``(module, collate, models)`` as loop.build expects; only the encoder is exported. One
    shared tower whatever ``model_settings.shared`` says: pre-training makes one encoder, which
    a later stage may still split into two."""
    settings = {**config.model_settings.overrides(), "shared": True}
    model = DualEncoder.from_pretrained(config.model, **settings)
    encoder = model.passage_model
    head = masked_lm_head(config.model, encoder)
    module = RetroMAETrainingModule(
        model, head, SentenceDecoder(encoder), build_loss(config.loss, **config.loss_args)
    )
    vocab = encoder.config.vocab_size
    collate = RetroMAECollator(model, store, config.retromae, config.seed, vocab)
    return module, collate, {"model": model}


def passage_rows(config: RetroMAEConfig, store: PassageStore) -> range:
    """The examples of a RetroMAE run: corpus rows ``0..N-1`` (``data.max_examples``: the
    first N passages only); the step sampler permutes them like any examples."""
    limit = config.data.max_examples or len(store)
    return range(min(limit, len(store)))


def retromae_card_facts(config: RetroMAEConfig, summary: dict, world: int) -> dict:
    """The model card's training settings of a RetroMAE run."""
    return {
        "training kind": "retromae (masked auto-encoding pre-training)",
        "decoder": "one transformer layer, simple decoding (no enhanced decoding)",
        "loss": "encoder masked-LM + decoder masked-LM (shared head)",
        "encoder mask ratio": config.retromae.encoder_mask_ratio,
        "decoder mask ratio": config.retromae.decoder_mask_ratio,
        "training data": f"{config.data.tables}/corpus passages",
        "passages": config.data.max_examples or "all",
        "steps": summary["steps"],
        "epochs": config.epochs,
        "passages per step": f"{config.batch_size} x {world} workers",
        "learning rate": config.lr,
        "model settings": config.model_settings.overrides(),
        "seed": config.seed,
        "final loss": summary["final_loss"],
    }
