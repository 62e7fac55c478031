"""`rqa average` as a user types it (in-process through ``pipelines.cli.main``): the averaged model
read back by RQA and sentence-transformers with the same vectors, its record, and a one-line
error that leaves no output folder.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file

from pipelines.cli import main
from retrieval.encoding import encode_queries
from retrieval.models import DualEncoder
from tests.helpers_models import perturbed_copy

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
