"""Retrieval models on HF transformers: pooling, the dual encoder and the cross-encoder.

Models know nothing about datasets, Ray or DeepSpeed; they map tokenized text to scores.
"""

from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder, DualEncoderSettings
from retrieval.models.pooling import POOLING_MODES, pool

__all__ = ["POOLING_MODES", "CrossEncoder", "DualEncoder", "DualEncoderSettings", "pool"]
