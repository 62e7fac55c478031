"""GPU tests: self-contained (no ../shared data, no packaged MiniLM), so they run on a bare GPU
machine with only this repository. Every test here is marked ``gpu`` and skips without CUDA;
`make test` leaves them out, `make test-gpu` runs them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from retrieval.tables import CORPUS, QRELS, QUERIES, write_table

WORDS = [f"w{i}" for i in range(300)]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def gpu_tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 64) with a WordPiece vocabulary of the test words."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("gpu-tiny-bert")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def word_tables(tmp_path_factory) -> Path:
    """Prepared tables: 600 passages of 30 random words, 200 train queries made of 6 words of
    their one relevant passage (so training can learn to find it)."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("gpu-tables")
    texts = [" ".join(rng.choices(WORDS, k=30)) for _ in range(600)]
    corpus = [{"pid": f"p{i}", "title": None, "text": t} for i, t in enumerate(texts)]
    write_table(root / "corpus", corpus, CORPUS, shard_rows=150)
    queries, qrels = [], []
    for i in range(200):
        words = texts[i].split()
        queries.append({"qid": f"q{i}", "text": " ".join(rng.sample(words, 6))})
        qrels.append({"qid": f"q{i}", "pid": f"p{i}", "relevance": 1})
    for split in ("train", "dev"):
        write_table(root / f"queries-{split}", queries, QUERIES, shard_rows=64)
        write_table(root / f"qrels-{split}", qrels, QRELS)
    return root
