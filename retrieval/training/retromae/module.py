"""RetroMAE's training objective in one nn.Module, so the DeepSpeed engine's forward returns
the loss: encoder masked-LM loss + decoder masked-LM loss, one vocabulary head for both.

Holds the arithmetic only; masking is the collator's (masking.py), assembly build.py's.
"""

from __future__ import annotations

import torch
from torch import nn

from retrieval.models.dual_encoder import DualEncoder
from retrieval.models.pooling import exclude_prefix, pool
from retrieval.training.loss_precision import as_fp32
from retrieval.training.retromae.decoder import SentenceDecoder
from retrieval.training.retromae.masking import IGNORE


class RetroMAETrainingModule(nn.Module):
    """Masked auto-encoding of passages (Xiao et al. 2022, "RetroMAE", EMNLP)::

        h, e   = encoder(lightly masked passage)      token states, sentence embedding
        L_enc  = CE(head(h_i), x_i)   over the encoder's masked positions i
        d      = decoder([e, emb(heavily masked copy)_1..])
        L_dec  = CE(head(d_j), x_j)   over the decoder's masked positions j
        loss   = L_enc + L_dec

    ``e`` is the dual encoder's own pooling of ``h`` (mean for all-MiniLM-L6-v2, [CLS] for
    DPR-style models) before any head or normalisation: the vector retrieval later uses is the
    one the decoder must rebuild the passage from. The decoder reaches the encoder's layers
    through ``e`` only; the token embeddings it reads are the encoder's embedding table, shared
    as in the paper. Each loss is the mean over that side's masked tokens in the batch.
    """

    def __init__(
        self, model: DualEncoder, head: nn.Module, decoder: SentenceDecoder, loss: nn.Module
    ):
        super().__init__()
        if model.settings.pooling == "prompt":
            raise ValueError("RetroMAE cannot pool with 'prompt': masking adds [MASK] tokens")
        self.model, self.head, self.decoder, self.loss = model, head, decoder, loss

    @property
    def encoder(self) -> nn.Module:
        return self.model.passage_model

    def head_parameters(self) -> list[nn.Parameter]:
        """The training-only parts that ``head_lr`` trains (retrieval/training/optimizer.py):
        the masked-LM head and the decoder, less the word embeddings the head is tied to."""
        encoder = {id(p) for p in self.encoder.parameters()}
        parts = [*self.head.parameters(), *self.decoder.parameters()]
        return [p for p in parts if id(p) not in encoder]

    def forward(self, encoder: dict, decoder: dict) -> torch.Tensor:
        losses = self.losses(encoder, decoder)
        return losses["encoder"] + losses["decoder"]

    def losses(self, encoder: dict, decoder: dict) -> dict[str, torch.Tensor]:
        """Both terms apart (tests, diagnostics): ``{"encoder": L_enc, "decoder": L_dec}``."""
        states, sentence = self.encode(encoder["input_ids"], encoder["attention_mask"])
        copy = self.encoder.embeddings(input_ids=decoder["input_ids"])
        rebuilt = self.decoder(sentence, copy, encoder["attention_mask"])
        return {
            "encoder": self.masked_lm(states, encoder["labels"]),
            "decoder": self.masked_lm(rebuilt, decoder["labels"]),
        }

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``[B, L, H]`` and the pooled sentence embedding ``[B, H]``."""
        settings = self.model.settings
        needs_layers = settings.pooling == "first_last_avg"
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=needs_layers,
            return_dict=True,
        )
        mask = attention_mask
        if not settings.pool_prefix:
            mask = exclude_prefix(mask, self.model.prefix_tokens("passage"))
        hidden = out.hidden_states if needs_layers else None
        return out.last_hidden_state, pool(settings.pooling, out.last_hidden_state, mask, hidden)

    def masked_lm(self, states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss at the labelled positions only: the vocabulary projection of every token
        would cost ``B x L x V`` scores for the few that count."""
        chosen = labels != IGNORE
        (logits,) = as_fp32(self.head(states[chosen]))  # the softmax over V in float32
        return self.loss(logits, labels[chosen])
