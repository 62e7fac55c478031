"""Raw dataset files (BEIR, MS MARCO, DPR NQ, RocketQA) to sharded Parquet tables.

Readers only parse and validate; they hold no tokenisation, training or evaluation code.
"""

from retrieval.tables.readers.beir import prepare_beir
from retrieval.tables.readers.dpr_nq import prepare_nq
from retrieval.tables.readers.msmarco import prepare_msmarco
from retrieval.tables.readers.rocketqa import prepare_rocketqa

__all__ = ["prepare_beir", "prepare_msmarco", "prepare_nq", "prepare_rocketqa"]
