"""Corpus rows -> RetroMAE's two masked views of each passage: a lightly masked one for the
encoder, a heavily masked one for the decoder, with the original tokens as labels there.

Every draw is seeded by (seed, step, corpus row), so a resumed run masks exactly as the
uninterrupted one did, whichever worker reads the row.
"""

from __future__ import annotations

import numpy as np
import torch

from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.passages import PassageStore
from retrieval.training.retromae.settings import RetroMAESettings

IGNORE = -100  # the label of a position that is not predicted (PyTorch's and HF's convention)
# BERT's corruption of the encoder's chosen tokens: 80% [MASK], 10% a random token, 10% kept, so
# the encoder cannot learn that only [MASK] positions matter (Devlin et al. 2019, 3.1).
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1


def mask_count(maskable: int, ratio: float) -> int:
    """How many of ``maskable`` tokens to mask: ``ratio`` of them rounded half up, at least one
    (a short passage still gives a target), none of none. An exact count rather than a coin per
    token, so every passage is masked at the configured ratio, not around it."""
    if maskable == 0:
        return 0
    return max(1, int(ratio * maskable + 0.5))


def choose_positions(rng: np.random.Generator, candidates: np.ndarray, ratio: float):
    """``mask_count`` of the ``candidates`` positions, drawn without replacement, in order."""
    size = mask_count(len(candidates), ratio)
    return torch.from_numpy(np.sort(rng.choice(candidates, size=size, replace=False)))


class RetroMAECollator:
    """Tokenizes passages as the dual encoder reads them (passage side: prefix, max length) and
    masks them twice, independently, at token level (RetroMAE's released code masks whole
    words; one token at a time is simpler and keeps the ratio exact). Special tokens and
    padding are never masked.

    Returns ``encoder``: ``input_ids`` (corrupted BERT-style), ``attention_mask``, ``labels``;
    ``decoder``: ``input_ids`` (chosen tokens replaced by [MASK]) and ``labels``. A label is the
    original token id at a masked position and -100 everywhere else.
    """

    def __init__(
        self,
        model: DualEncoder,
        passages: PassageStore,
        settings: RetroMAESettings,
        seed: int,
        vocab_size: int,
    ):
        tokenizer = model.tokenizer
        if tokenizer.mask_token_id is None:
            raise ValueError("RetroMAE needs a tokenizer with a mask token")
        self.model, self.passages, self.settings, self.seed = model, passages, settings, seed
        self.mask_id = tokenizer.mask_token_id
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.random_ids = np.setdiff1d(np.arange(vocab_size), self.special.numpy())

    def __call__(self, indices: np.ndarray, step: int) -> dict[str, dict[str, torch.Tensor]]:
        titles, texts = self.passages.get(indices)
        return self.mask(self.model.tokenize_passages(titles, texts), indices, step)

    def mask(self, tokens: dict, indices, step: int) -> dict[str, dict[str, torch.Tensor]]:
        """Both masked views of already tokenized passages (``indices``: their corpus rows)."""
        ids, attention = tokens["input_ids"], tokens["attention_mask"]
        maskable = attention.bool() & ~torch.isin(ids, self.special)
        encoder_ids, decoder_ids = ids.clone(), ids.clone()
        encoder_labels = torch.full_like(ids, IGNORE)
        decoder_labels = torch.full_like(ids, IGNORE)
        for row, index in enumerate(indices):
            rng = np.random.default_rng([self.seed, step, int(index)])
            candidates = maskable[row].nonzero().flatten().numpy()
            chosen = choose_positions(rng, candidates, self.settings.encoder_mask_ratio)
            encoder_labels[row, chosen] = ids[row, chosen]
            encoder_ids[row] = self.corrupt(rng, ids[row], chosen)
            chosen = choose_positions(rng, candidates, self.settings.decoder_mask_ratio)
            decoder_labels[row, chosen] = ids[row, chosen]
            decoder_ids[row, chosen] = self.mask_id
        return {
            "encoder": {"input_ids": encoder_ids, "attention_mask": attention,
                        "labels": encoder_labels},
            "decoder": {"input_ids": decoder_ids, "labels": decoder_labels},
        }  # fmt: skip

    def corrupt(self, rng: np.random.Generator, ids: torch.Tensor, chosen: torch.Tensor):
        """``ids`` with the ``chosen`` positions corrupted BERT-style (see MASK_SHARE)."""
        out = ids.clone()
        draw = torch.from_numpy(rng.random(len(chosen)))
        out[chosen[draw < MASK_SHARE]] = self.mask_id
        swapped = chosen[(draw >= MASK_SHARE) & (draw < MASK_SHARE + RANDOM_SHARE)]
        out[swapped] = torch.from_numpy(rng.choice(self.random_ids, size=len(swapped)))
        return out
