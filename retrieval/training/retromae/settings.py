"""The typed settings of a RetroMAE run: how much of each passage the encoder and the decoder
see masked. Kept apart from the training config so the pipeline's pretrain stage declares the
same keys with the same defaults and checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetroMAESettings(BaseModel):
    """Mask ratios of RetroMAE (Xiao et al. 2022, section 3): the encoder reads a lightly masked
    passage (15-30% in the paper), the decoder a heavily masked copy (50-70%), so most of what
    the decoder rebuilds must come through the sentence embedding."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    encoder_mask_ratio: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="retromae: share of each passage's tokens masked for the encoder "
        "(BERT-style: 80% [MASK], 10% a random token, 10% kept)",
    )
    decoder_mask_ratio: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="retromae: share of each passage's tokens the decoder must rebuild "
        "(all replaced by [MASK])",
    )
