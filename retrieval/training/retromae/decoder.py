"""RetroMAE's decoder, the simple form: one transformer layer that reads the sentence embedding
in place of the first token, then the embeddings of a heavily masked copy of the passage.

Not here: the paper's enhanced decoding (a query stream of sentence embedding + position
embeddings, with a sampled position-specific attention mask per token); this decoder attends
over the whole copy, so its masked positions learn from the embedding and the unmasked ~50%.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask


class SentenceDecoder(nn.Module):
    """A fresh layer of the encoder's own architecture (BERT's layer for a BERT encoder),
    initialised as the encoder's family initialises new weights; training-only, not exported.

    ``forward(sentence [B, H], token_embeddings [B, L, H], attention_mask [B, L]) -> [B, L, H]``:
    position 0 (the [CLS] slot) holds the sentence embedding as it is (no position embedding
    is added); positions 1.. hold the masked copy's embeddings; attention is bidirectional over
    every non-padding position.
    """

    def __init__(self, encoder: PreTrainedModel):
        super().__init__()
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        if not layers:
            raise ValueError(
                f"{type(encoder).__name__}: RetroMAE's decoder copies a layer of encoder.layer, "
                "which this model does not have"
            )
        self.config = encoder.config
        self.layer = type(layers[-1])(encoder.config)
        self.layer.apply(encoder._init_weights)

    def forward(
        self, sentence: torch.Tensor, token_embeddings: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        first = sentence.unsqueeze(1).to(token_embeddings.dtype)
        hidden = torch.cat([first, token_embeddings[:, 1:]], dim=1)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        out = self.layer(hidden, attention_mask=mask)
        return out[0] if isinstance(out, tuple) else out
