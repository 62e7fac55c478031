"""The vocabulary head both RetroMAE losses share: hidden states -> scores over the vocabulary.

Training-only: it lives in the training module, not in the exported encoder folder.
"""

from __future__ import annotations

import logging

import transformers
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from retrieval.errors import ConfigError

logger = logging.getLogger(__name__)


def masked_lm_head(base: str, encoder: PreTrainedModel) -> nn.Module:
    """The masked-LM head of the checkpoint ``base``, with its output projection tied to
    ``encoder``'s input word embeddings (as in BERT), so a token's embedding is also its
    output vector.

    A checkpoint saved with its head (bert-base-uncased, RetroMAE's starting point) keeps it;
    one saved without (all-MiniLM-L6-v2 is a plain BertModel) gets a freshly initialised head
    (BERT's initialisation: normal(0, 0.02) weights, zero bias, seeded by the run's seed), and
    the log says which. The encoder body of this second copy is dropped: ``encoder`` is the
    one trained and exported.
    """
    mlm, missing = _load_quietly(base)
    heads = {n: m for n, m in mlm.named_children() if n != mlm.base_model_prefix}
    if len(heads) != 1:
        raise ConfigError(
            f"{base}: RetroMAE needs a model whose masked-LM head is one module (BERT, RoBERTa, "
            f"...); {type(mlm).__name__} has {', '.join(heads) or 'none'}"
        )
    name, head = next(iter(heads.items()))
    mlm.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    fresh = any(key.startswith(f"{name}.") for key in missing)
    logger.info(
        "masked-LM head %s.%s: %s, tied to the encoder's word embeddings", type(mlm).__name__,
        name, "initialised fresh (the checkpoint has none)" if fresh else "from the checkpoint",
    )  # fmt: skip
    return head


def _load_quietly(base: str) -> tuple[PreTrainedModel, set[str]]:
    """The masked-LM model and the weights its checkpoint lacked, without HF's load report: a
    missing head is expected here, and :func:`masked_lm_head` logs it in one line."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(base, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return mlm, set(info["missing_keys"])
