"""Dual and cross encoders: save/load round trips and sentence-transformers interop."""

import numpy as np
import pytest
import torch

from retrieval.models import CrossEncoder, DualEncoder
from tests.conftest import minilm_path

TEXTS = ["a claim about vitamin D", "Short.", "a much longer passage " * 20]


def _embed(model: DualEncoder, texts: list[str]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.encode_passage(model.tokenize_passages([None] * len(texts), texts)).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls", "weighted_mean", "first_last_avg"])
def test_save_load_round_trip_is_exact(tiny_bert_dir, tmp_path, pooling):
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling=pooling, temperature=0.1)
    model.save(tmp_path / "m")
    again = DualEncoder.from_pretrained(tmp_path / "m")
    assert again.settings == model.settings
    np.testing.assert_array_equal(_embed(model, TEXTS), _embed(again, TEXTS))


def test_separate_towers_round_trip(tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir, shared=False)
    with torch.no_grad():  # make the towers differ so a mix-up would show
        for p in model.passage_model.parameters():
            p.add_(0.01)
    model.save(tmp_path / "m")
    again = DualEncoder.from_pretrained(tmp_path / "m")
    assert not again.settings.shared
    again.eval()
    model.eval()
    q = model.tokenize_queries(TEXTS)
    with torch.no_grad():
        assert torch.equal(model.encode_query(q), again.encode_query(q))
        assert torch.equal(model.encode_passage(q), again.encode_passage(q))
        assert not torch.allclose(again.encode_query(q), again.encode_passage(q))


@pytest.mark.parametrize(
    "pooling,normalize", [("mean", True), ("cls", False), ("weighted_mean", True)]
)
def test_saved_folder_loads_in_sentence_transformers(tiny_bert_dir, tmp_path, pooling, normalize):
    from sentence_transformers import SentenceTransformer

    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling=pooling, normalize=normalize)
    model.save(tmp_path / "m")
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    theirs = st.encode(TEXTS, convert_to_numpy=True, batch_size=2)
    np.testing.assert_allclose(_embed(model, TEXTS), theirs, atol=1e-5)


def test_reads_sentence_transformers_settings_of_minilm():
    model = DualEncoder.from_pretrained(minilm_path())
    assert model.settings.pooling == "mean"
    assert model.settings.normalize
    assert model.settings.passage_max_len == 256
    assert model.dim == 384


def test_score_is_cosine_over_temperature(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, normalize=False, temperature=0.5)
    q, p = torch.randn(3, 32), torch.randn(4, 32)
    expected = torch.stack(
        [torch.stack([torch.cosine_similarity(a, b, dim=0) / 0.5 for b in p]) for a in q]
    )
    assert torch.allclose(model.score(q, p), expected, atol=1e-6)


def test_bad_settings_are_rejected(tiny_bert_dir):
    with pytest.raises(ValueError, match="pooling 'max'"):
        DualEncoder.from_pretrained(tiny_bert_dir, pooling="max")
    with pytest.raises(ValueError, match="unknown dual encoder settings: pooler"):
        DualEncoder.from_pretrained(tiny_bert_dir, pooler="cls")


def test_cross_encoder_round_trip_and_sentence_transformers(tiny_bert_dir, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(tiny_bert_dir)
    model.save(tmp_path / "ce")
    again = CrossEncoder.from_pretrained(tmp_path / "ce")
    queries = ["what is x", "why y"]
    titles = ["Title", None]
    texts = ["x is a letter", "because z"]
    model.eval()
    again.eval()
    with torch.no_grad():
        ours = model(model.tokenize(queries, titles, texts))
        assert torch.allclose(ours, again(again.tokenize(queries, titles, texts)), atol=1e-7)
    saved, loaded = model.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    st = STCrossEncoder(str(tmp_path / "ce"), device="cpu")
    pairs = [(q, f"{a} {b}".strip() if a else b) for q, a, b in zip(queries, titles, texts)]
    theirs = st.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_score_lists_scores_each_query_against_its_own_list(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, similarity="dot", temperature=0.5)
    q, lists = torch.randn(2, 32), torch.randn(2, 3, 32)
    expected = torch.tensor([[float(q[i] @ lists[i, j]) / 0.5 for j in range(3)] for i in range(2)])
    assert torch.allclose(model.score_lists(q, lists), expected, atol=1e-5)
