"""BERT-whitening: the fitted map against numpy references (identity covariance, an
eigendecomposition written here), the beta/gamma = 0 identity, and the whitened model saved and
reloaded through RQA and sentence-transformers with the same vectors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from retrieval.encoding import encode_passages, encode_queries
from retrieval.models import DualEncoder
from retrieval.whitening import fit_whitening, pooled_vectors, whitened

TEXTS = [
    "a claim about vitamin D",
    "Short.",
    "a much longer passage " * 10,
    "the cat sat on the mat",
    "dogs bark at night",
    "proteins fold into shapes",
    "the stock market fell",
    "rain is expected tomorrow",
    "she plays the violin",
    "a new vaccine was approved",
]


def _correlated(n: int = 400, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * np.linspace(3, 0.2, d)[:, None]
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d) * 5


@pytest.mark.parametrize("k", [6, 4, 1])
def test_whitened_sample_covariance_is_the_identity(k):
    x = _correlated()
    weight, bias = fit_whitening(x, k)
    y = x @ weight + bias
    assert y.shape == (400, k)
    np.testing.assert_allclose(np.atleast_2d(np.cov(y, rowvar=False)), np.eye(k), atol=1e-10)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-10)


def test_matches_an_eigendecomposition_written_out_for_beta_gamma_variant():
    x, beta, gamma, k = _correlated(seed=1), 0.5, 0.7, 3
    weight, bias = fit_whitening(x, k, beta, gamma)
    mu = x.mean(axis=0)
    cov = (x - mu).T @ (x - mu) / (len(x) - 1)
    values, vectors = np.linalg.eigh(cov)  # ascending
    top = np.argsort(values)[::-1][:k]
    reference = (x - beta * mu) @ vectors[:, top] @ np.diag(values[top] ** (-gamma / 2))
    ours = x @ weight + bias
    signs = np.sign(np.sum(ours * reference, axis=0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(ours * signs, reference, rtol=1e-9, atol=1e-9)


def test_beta_gamma_zero_is_the_identity_up_to_rotation():
    x = _correlated(seed=2)
    weight, bias = fit_whitening(x, None, beta=0.0, gamma=0.0)
    np.testing.assert_allclose(weight @ weight.T, np.eye(6), atol=1e-12)  # orthogonal
    np.testing.assert_array_equal(bias, 0.0)
    y = x @ weight + bias
    np.testing.assert_allclose(y @ y.T, x @ x.T, rtol=1e-9, atol=1e-8)  # every dot product
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-12)


def test_too_few_vectors_for_the_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="span only 3 dimensions, fewer than 6"):
        fit_whitening(_correlated(n=4), 6)
    flat = _correlated()
    flat[:, 2] = 0.0  # never varies, like 3 of all-MiniLM-L6-v2's dimensions
    with pytest.raises(ValueError, match="span only 5 dimensions"):
        fit_whitening(flat, 6)
    assert fit_whitening(flat, 5)[0].shape == (6, 5)
    with pytest.raises(ValueError, match=r"dimension must be in 1..6"):
        fit_whitening(_correlated(), 7)


def _rqa_vectors(model: DualEncoder, side: str = "passage") -> np.ndarray:
    if side == "query":
        return encode_queries(model, TEXTS, batch_size=4, show_progress=False)
    return encode_passages(model, [None] * len(TEXTS), TEXTS, 4, show_progress=False)


@pytest.mark.parametrize(
    "pooling,normalize", [("mean", True), ("cls", False), ("first_last_avg", True)]
)
def test_whitened_model_reloads_in_rqa_and_sentence_transformers(
    tiny_bert_dir, tmp_path, pooling, normalize
):
    from sentence_transformers import SentenceTransformer

    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling=pooling, normalize=normalize)
    result = whitened(model, pooled_vectors(model, TEXTS, show_progress=False), 8)
    assert result.dim == 8
    result.save(tmp_path / "w")
    modules = json.loads((tmp_path / "w" / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    assert kinds[-2:] == (["Dense", "Normalize"] if normalize else ["Pooling", "Dense"])

    again = DualEncoder.from_pretrained(tmp_path / "w")
    ours = _rqa_vectors(again)
    np.testing.assert_allclose(ours, _rqa_vectors(result), atol=1e-6)
    st = SentenceTransformer(str(tmp_path / "w"), device="cpu")
    theirs = st.encode(TEXTS, batch_size=3, convert_to_numpy=True)
    assert theirs.shape == (len(TEXTS), 8)
    # whitening scales the smallest of 8 directions up ~100x, and float noise of other batch
    # shapes with it
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_whitened_model_vectors_have_identity_covariance_on_the_fitted_texts(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, normalize=False)
    result = whitened(model, pooled_vectors(model, TEXTS, show_progress=False), 5)
    y = _rqa_vectors(result).astype(np.float64)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(5), atol=1e-3)


def test_whitening_a_whitened_model_composes_into_one_head(tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir, normalize=False)
    once = whitened(model, pooled_vectors(model, TEXTS, show_progress=False), 8, 1.0, 0.5)
    first_out = pooled_vectors(once, TEXTS, show_progress=False)
    twice = whitened(once, first_out, 4)
    weight, bias = fit_whitening(first_out, 4)
    expected = first_out.astype(np.float64) @ weight + bias
    np.testing.assert_allclose(_rqa_vectors(twice), expected, atol=1e-4)
    twice.save(tmp_path / "w2")
    modules = json.loads((tmp_path / "w2" / "modules.json").read_text())
    assert sum(m["type"].endswith("Dense") for m in modules) == 1


def test_beta_gamma_zero_leaves_cosines_unchanged_in_the_model(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, normalize=True)
    vectors = pooled_vectors(model, TEXTS, show_progress=False)
    rotated = whitened(model, vectors, None, beta=0.0, gamma=0.0)
    plain, turned = _rqa_vectors(model, "query"), _rqa_vectors(rotated, "query")
    np.testing.assert_allclose(turned @ turned.T, plain @ plain.T, atol=1e-5)
    assert not np.allclose(turned, plain, atol=1e-3)  # rotated, not the same coordinates


def test_head_is_applied_before_normalisation(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, normalize=True)
    result = whitened(model, pooled_vectors(model, TEXTS, show_progress=False), 6)
    raw = pooled_vectors(model, TEXTS, show_progress=False)
    weight, bias = result.head.linear.weight.detach(), result.head.linear.bias.detach()
    expected = torch.nn.functional.normalize(torch.from_numpy(raw) @ weight.T + bias, dim=-1)
    np.testing.assert_allclose(_rqa_vectors(result), expected.numpy(), atol=1e-5)
