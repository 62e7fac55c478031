"""`rqa average` as a user types it (in-process through ``pipelines.cli.main``): the averaged model
read back by RQA and sentence-transformers with the same vectors (the same logits for
cross-encoders), its record, and a one-line error that leaves no output folder.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.numpy import load_file

from pipelines.cli import main
from retrieval.encoding import encode_queries
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.tables import CORPUS, write_table
from tests.helpers_models import perturbed_copy, perturbed_cross_encoder

SENTENCES = ["a claim about vitamin D", "dogs bark at night", "Short.", "the stock market fell"]


def rqa(*args) -> int:
    return main([str(arg) for arg in args])


def test_average_writes_a_model_rqa_and_sentence_transformers_read_alike(
    tiny_bert_dir, tmp_path, capsys
):
    from sentence_transformers import SentenceTransformer

    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "soup"
    perturbed_copy(tiny_bert_dir, a, seed=1)
    perturbed_copy(tiny_bert_dir, b, seed=2)
    assert rqa("average", "--models", a, b, "--weights", 1, 3, "--out", out) == 0
    assert "weighted average of 2 models" in capsys.readouterr().out
    assert json.loads((out / "rqa_average.json").read_text())["weights"] == [0.25, 0.75]
    weights = [load_file(str(f / "model.safetensors")) for f in (a, b, out)]
    for key, value in weights[2].items():
        expected = 0.25 * weights[0][key] + 0.75 * weights[1][key]
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7, err_msg=key)
    ours = encode_queries(DualEncoder.from_pretrained(out), SENTENCES, show_progress=False)
    theirs = SentenceTransformer(str(out), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    alone = encode_queries(DualEncoder.from_pretrained(b), SENTENCES, show_progress=False)
    assert not np.allclose(ours, alone, atol=1e-3)


def test_average_of_models_that_encode_differently_is_one_line_and_writes_nothing(
    tiny_bert_dir, tmp_path, capsys
):
    cls, out = tmp_path / "cls", tmp_path / "soup"
    perturbed_copy(tiny_bert_dir, cls, seed=1, pooling="cls")
    assert rqa("average", "--models", tiny_bert_dir, cls, "--out", out) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "model 1 has pooling = 'cls', model 0 'mean'" in errors[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["cls"]
    assert rqa("average", "--models", cls, "--out", out) == 2
    assert "at least 2 models" in capsys.readouterr().err and not out.exists()


def test_average_of_cross_encoders_is_a_cross_encoder_with_the_mean_head(tiny_bert_dir, tmp_path):
    """Re-rankers average too, the classifier head with the encoder: before, the folders loaded
    as dual encoders and the soup was saved as one, its head dropped without a word."""
    from sentence_transformers import CrossEncoder as STCrossEncoder

    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "soup"
    perturbed_cross_encoder(tiny_bert_dir, a, seed=1)
    perturbed_cross_encoder(tiny_bert_dir, b, seed=2)
    assert rqa("average", "--models", a, b, "--weights", 1, 3, "--out", out) == 0
    weights = [load_file(str(f / "model.safetensors")) for f in (a, b, out)]
    assert weights[2].keys() == weights[0].keys() and "classifier.weight" in weights[2]
    for key, value in weights[2].items():
        expected = 0.25 * weights[0][key] + 0.75 * weights[1][key]
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7, err_msg=key)
    model = CrossEncoder.from_pretrained(out).eval()
    with torch.no_grad():
        ours = model(model.tokenize(SENTENCES[:2], [None, None], SENTENCES[2:])).numpy()
    st = STCrossEncoder(str(out), device="cpu")
    theirs = st.predict(list(zip(SENTENCES[:2], SENTENCES[2:])), activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_dual_encoder_and_a_cross_encoder_are_one_line_and_write_nothing(
    tiny_bert_dir, tmp_path, capsys
):
    cross, out = tmp_path / "cross", tmp_path / "soup"
    perturbed_cross_encoder(tiny_bert_dir, cross, seed=1)
    assert rqa("average", "--models", tiny_bert_dir, cross, "--out", out) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "model 1 is a CrossEncoder, model 0 a DualEncoder" in errors[0]
    assert not out.exists()


def test_a_command_that_encodes_refuses_a_cross_encoder_in_one_line(
    tiny_bert_dir, tmp_path, capsys
):
    """`rqa encode` once loaded a re-ranker's folder as a dual encoder (its head dropped) and
    wrote vectors no model was trained to give."""
    cross = tmp_path / "cross"
    perturbed_cross_encoder(tiny_bert_dir, cross, seed=1)
    corpus = tmp_path / "corpus"
    write_table(corpus, [{"pid": "d1", "title": "", "text": "a passage"}], CORPUS)
    code = rqa("encode", "--model", cross, "--corpus", corpus, "--out", tmp_path / "emb")
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1
    assert "a cross-encoder (rqa_cross_encoder.json)" in errors[0]
    assert not (tmp_path / "emb").exists()
