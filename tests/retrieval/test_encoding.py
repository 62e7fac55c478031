"""Batched encoding against two references: the HF model run on one text at a time, unpadded,
and sentence-transformers loading the saved dual encoder.

Batches are sorted by length and padded per batch; neither may change a vector or its place.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from retrieval.encoding import _token_batches, encode_corpus, encode_passages, encode_queries
from retrieval.models import DualEncoder
from retrieval.precision import bf16_is_fast, resolve_precision
from retrieval.tables import CORPUS, embeddings_schema, read_manifest, read_table, write_table

LONG = "Vitamin D deficiency is associated with a higher risk of fractures in older adults. " * 30
TEXTS = [
    "Short.",
    LONG,  # over 256 tokens: truncated for passages and (at 64) for queries
    "A medium length claim about the effect of statins on cholesterol levels.",
    "",
    "Ünïcödé text — with dashes, numbers 3.14 and symbols %$#.",
    LONG[:300],  # between 64 and 256 tokens
    "x",
]
TITLES = [None, "Bone health", None, "Empty body", "", None, "A title"]


def reference_vectors(model_dir, texts: list[str], max_len: int) -> np.ndarray:
    """Each text alone, unpadded, through the HF model; mean pooling and L2 norm in numpy."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    vectors = []
    for text in texts:
        inputs = tokenizer(text, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.no_grad():
            states = model(**inputs).last_hidden_state[0].numpy()
        mean = states.mean(axis=0)
        vectors.append(mean / np.linalg.norm(mean))
    return np.stack(vectors)


def joined(titles: list[str | None], texts: list[str]) -> list[str]:
    """Title, a space, then the body (BEIR's way); the body alone when there is no title."""
    return [f"{title} {text}".strip() if title else text for title, text in zip(titles, texts)]


@pytest.fixture(scope="module")
def model(tiny_bert_dir) -> DualEncoder:
    return DualEncoder.from_pretrained(tiny_bert_dir)


def test_passages_equal_one_text_at_a_time(model, tiny_bert_dir):
    got = encode_passages(model, TITLES, TEXTS, batch_size=3, show_progress=False)

    expected = reference_vectors(tiny_bert_dir, joined(TITLES, TEXTS), max_len=256)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_queries_equal_one_text_at_a_time(model, tiny_bert_dir):
    got = encode_queries(model, TEXTS, batch_size=2, show_progress=False)

    expected = reference_vectors(tiny_bert_dir, TEXTS, max_len=64)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_batch_size_changes_nothing(model):
    one_batch = encode_passages(model, TITLES, TEXTS, batch_size=100, show_progress=False)
    single = encode_passages(model, TITLES, TEXTS, batch_size=1, show_progress=False)
    np.testing.assert_allclose(one_batch, single, atol=1e-5)


@pytest.mark.parametrize(
    "pooling, normalize", [("mean", True), ("mean", False), ("cls", True), ("weighted_mean", True)]
)
def test_sentence_transformers_loads_the_saved_model_alike(
    tiny_bert_dir, tmp_path, pooling, normalize
):
    from sentence_transformers import SentenceTransformer

    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling=pooling, normalize=normalize)
    model.save(tmp_path / "saved")
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")

    passages = encode_passages(model, [None] * len(TEXTS), TEXTS, show_progress=False)
    np.testing.assert_allclose(st.encode(TEXTS, batch_size=4), passages, atol=1e-5)
    # sentence-transformers has one max length (the passages' 256), so queries stay short here.
    short = [t for t in TEXTS if len(model.tokenizer(t)["input_ids"]) <= 64]
    queries = encode_queries(model, short, show_progress=False)
    np.testing.assert_allclose(st.encode(short, batch_size=4), queries, atol=1e-5)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("float16", 1e-3)])
def test_encode_corpus_keeps_pids_order_and_shards(model, tiny_bert_dir, tmp_path, dtype, atol):
    rows = [
        {"pid": f"doc-{i}", "title": TITLES[i % len(TITLES)], "text": TEXTS[i % len(TEXTS)]}
        for i in range(10)
    ]
    write_table(tmp_path / "corpus", rows, CORPUS, shard_rows=4)

    manifest = encode_corpus(
        model, tmp_path / "corpus", tmp_path / "emb", batch_size=3, dtype=dtype, show_progress=False
    )

    table = read_table(tmp_path / "emb")
    assert table.schema.equals(embeddings_schema(32, dtype))
    assert table.schema.field("vector").type.value_type == getattr(pa, dtype)()
    assert table["pid"].to_pylist() == [row["pid"] for row in rows]
    corpus_shards = read_manifest(tmp_path / "corpus")["files"]
    assert [f["rows"] for f in manifest["files"]] == [f["rows"] for f in corpus_shards]
    assert [f["rows"] for f in corpus_shards] == [4, 4, 2]
    assert manifest["rows"] == 10
    assert manifest["meta"] == {"dim": 32, "dtype": dtype, "normalized": True}
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    titles = [row["title"] for row in rows]
    expected = reference_vectors(tiny_bert_dir, joined(titles, [r["text"] for r in rows]), 256)
    np.testing.assert_allclose(vectors, expected, atol=atol)


def test_empty_inputs_give_empty_outputs(model, tmp_path):
    assert encode_queries(model, [], show_progress=False).shape == (0, 32)
    assert encode_passages(model, [], [], show_progress=False).shape == (0, 32)
    write_table(tmp_path / "corpus", [], CORPUS)  # one empty shard, as write_table keeps schemas

    manifest = encode_corpus(model, tmp_path / "corpus", tmp_path / "emb", show_progress=False)

    assert manifest["rows"] == 0
    assert read_table(tmp_path / "emb").schema.equals(embeddings_schema(32))


def test_bf16_agrees_with_fp32_on_real_passages(scifact_dir):
    """bf16 (native or emulated) keeps MiniLM's SciFact vectors within cosine 0.999 of fp32."""
    from tests.conftest import minilm_path

    docs = [json.loads(line) for line in (scifact_dir / "corpus.jsonl").open()][:12]
    titles, texts = [d["title"] for d in docs], [d["text"] for d in docs]
    minilm = DualEncoder.from_pretrained(minilm_path())

    exact = encode_passages(minilm, titles, texts, show_progress=False)
    low = encode_passages(minilm, titles, texts, show_progress=False, precision="bf16")

    assert low.dtype == np.float32 and low.shape == exact.shape
    assert (low * exact).sum(1).min() >= 0.999
    assert all(p.dtype == torch.float32 for p in minilm.parameters())  # the model is untouched


def test_bf16_corpus_says_so_in_its_manifest(model, tmp_path):
    rows = [{"pid": f"doc-{i}", "title": None, "text": TEXTS[i]} for i in range(len(TEXTS))]
    write_table(tmp_path / "corpus", rows, CORPUS, shard_rows=3)

    manifest = encode_corpus(
        model, tmp_path / "corpus", tmp_path / "emb", show_progress=False, precision="bf16"
    )

    assert manifest["meta"]["precision"] == "bf16"
    assert read_table(tmp_path / "emb")["pid"].to_pylist() == [r["pid"] for r in rows]


def test_precision_is_checked_and_auto_follows_the_hardware(model):
    with pytest.raises(ValueError, match="precision"):
        encode_queries(model, ["a"], show_progress=False, precision="fp16")
    assert resolve_precision("auto") == ("bf16" if bf16_is_fast("cpu") else "fp32")
    assert resolve_precision("fp32") == "fp32"


@pytest.mark.parametrize("max_texts, max_tokens", [(3, 1), (3, 7), (4, 64), (100, None)])
def test_batches_cover_every_row_once_within_both_caps(max_texts, max_tokens):
    lengths = np.array([5, 1, 9, 9, 3, 0, 2, 7, 7, 1])

    batches = list(_token_batches(lengths, max_texts, max_tokens))

    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for rows in batches:  # one text alone may exceed the token cap; more than one may not
        assert len(rows) <= max_texts
        assert max_tokens is None or len(rows) == 1 or len(rows) * lengths[rows].max() <= max_tokens
    flat = np.concatenate(batches)
    assert (np.diff(lengths[flat]) <= 0).all()  # longest first


def test_token_cap_changes_nothing(model):
    capped = encode_passages(model, TITLES, TEXTS, show_progress=False, max_tokens=40)
    uncapped = encode_passages(model, TITLES, TEXTS, show_progress=False, max_tokens=10**6)
    np.testing.assert_allclose(capped, uncapped, atol=1e-5)
    with pytest.raises(ValueError, match="max_tokens"):
        encode_queries(model, ["a"], show_progress=False, max_tokens=0)
