"""Reading cross-encoder logits (scored by pipelines/inference) when denoising mined negatives
and pseudo-labelling augmented queries.

sigmoid(logit) is a probability only for a re-ranker trained pointwise (BCE, as RocketQA does),
and only once it is well trained; the ``relative`` modes of denoise and augment compare logits
within a query instead, which needs no calibration.
"""

from __future__ import annotations

import math


def sigmoid(logit: float) -> float:
    """P(relevant) of a pointwise re-ranker's logit, without overflow for large |logit|."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)
