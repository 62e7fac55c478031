"""`rqa evaluate-sts`, `rqa evaluate-pairs` and `rqa whiten` as a user types them (in-process
through ``pipelines.cli.main``): printed tables, JSON, one-line errors, and the whitened model
read back by RQA and sentence-transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from retrieval.encoding import encode_queries
from retrieval.evaluation import evaluate_sts, read_sentence_pairs
from retrieval.models import DualEncoder
from tests.conftest import STSB

STSB_DEV = STSB / "dev.tsv"


def rqa(*args) -> int:
    return main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def sts_dir(tmp_path_factory) -> Path:
    """STS-B layout: dev.tsv and test.tsv, 80 real pairs each (CRLF kept, as the source)."""
    folder = tmp_path_factory.mktemp("stsb")
    lines = STSB_DEV.read_bytes().split(b"\n")
    (folder / "dev.tsv").write_bytes(b"\n".join(lines[:81]) + b"\n")
    (folder / "test.tsv").write_bytes(b"\n".join(lines[:1] + lines[81:161]) + b"\n")
    return folder


def test_evaluate_sts_prints_a_table_and_writes_the_evaluators_numbers(
    tiny_bert_dir, sts_dir, tmp_path, capsys
):
    out = tmp_path / "m.json"
    assert rqa("evaluate-sts", "--model", tiny_bert_dir, "--sts", sts_dir, "--output", out) == 0
    printed = capsys.readouterr().out
    assert "| similarity | Spearman | Pearson |" in printed and "| manhattan |" in printed
    written = json.loads(out.read_text())
    assert written["pairs"] == 80 and written["split"] == "dev"
    pairs = read_sentence_pairs(sts_dir / "dev.tsv")
    expected = evaluate_sts(DualEncoder.from_pretrained(tiny_bert_dir), pairs, show_progress=False)
    for key, value in expected.items():
        assert written[key] == pytest.approx(value, abs=1e-9), key
        assert f"{value:.4f}" in printed


def test_evaluate_sts_reads_senteval_files(tiny_bert_dir, tmp_path, capsys):
    folder = tmp_path / "ATEC"
    folder.mkdir()
    (folder / "ATEC.valid.data").write_text(
        "我想借钱\t怎么借钱\t1\n花呗还款\t今天下雨\t0\n你好\t您好\t1\n"
    )
    assert rqa("evaluate-sts", "--model", tiny_bert_dir, "--sts", folder, "--split", "dev") == 0
    assert "ATEC.valid.data (3 pairs)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad_line,expected",
    [
        (
            "dev\tg\td\t2012\t0009\tfour\tA man.\tA woman.",
            r"dev.tsv:3: field 'score': not a number",
        ),
        ("dev\tg\td\t2012\t0009\t4.0\tA man.", r"dev.tsv:3: field 'sentence2': missing"),
    ],
)
def test_bad_sts_lines_are_one_line_errors(tmp_path, capsys, bad_line, expected):
    lines = STSB_DEV.read_text().splitlines()
    (tmp_path / "dev.tsv").write_text("\n".join([*lines[:2], bad_line, *lines[2:5]]) + "\n")
    # the file fails before the model is loaded: the model does not even exist
    assert rqa("evaluate-sts", "--model", tmp_path / "nope", "--sts", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rqa evaluate-sts: error: ")
    assert re.search(expected, err)


def test_missing_split_is_a_one_line_error(tmp_path, capsys):
    assert rqa("evaluate-sts", "--model", "m", "--sts", tmp_path, "--split", "test") == 2
    err = capsys.readouterr().err
    assert "no file for split 'test'" in err and err.count("\n") == 1


def test_evaluate_pairs_applies_dev_thresholds_to_test(tiny_bert_dir, sts_dir, tmp_path, capsys):
    out = tmp_path / "p.json"
    code = rqa(
        "evaluate-pairs",
        "--model",
        tiny_bert_dir,
        "--data",
        sts_dir,
        "--split",
        "dev",
        "--apply-to",
        "test",
        "--positive-at",
        4.0,
        "--output",
        out,
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "own thresholds" in printed and "thresholds of dev" in printed
    written = json.loads(out.read_text())
    assert written["positive_at"] == 4.0 and written["thresholds_from"] == "dev"
    for name in ("cosine", "dot", "euclidean", "manhattan"):
        for key in ("accuracy_threshold", "f1_threshold"):
            assert written["test"][f"{name}_{key}"] == written["dev"][f"{name}_{key}"]
        assert 0 <= written["test"][f"{name}_accuracy"] <= 1


def test_evaluate_pairs_on_graded_labels_asks_for_a_cut(tiny_bert_dir, sts_dir, capsys):
    assert rqa("evaluate-pairs", "--model", tiny_bert_dir, "--data", sts_dir) == 2
    err = capsys.readouterr().err
    assert "--positive-at" in err and err.count("\n") == 1


def test_whiten_writes_a_model_rqa_and_sentence_transformers_read_alike(
    tiny_bert_dir, sts_dir, tmp_path, capsys
):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "whitened"
    texts = sts_dir / "dev.tsv"  # both sentences of 80 pairs
    assert rqa("whiten", "--model", tiny_bert_dir, "--texts", texts, "--dim", 12, "--out", out) == 0
    assert "32 -> 12 dims" in capsys.readouterr().out
    record = json.loads((out / "rqa_whitening.json").read_text())
    assert record["dim"] == 12 and record["fitted_on"] > 100
    model = DualEncoder.from_pretrained(out)
    assert model.dim == 12
    sentences = read_sentence_pairs(texts).sentences1[:10]
    ours = encode_queries(model, sentences, show_progress=False)
    theirs = SentenceTransformer(str(out), device="cpu").encode(sentences, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert rqa("evaluate-sts", "--model", out, "--sts", sts_dir) == 0


def test_whiten_reads_text_files_and_beir_corpora(tiny_bert_dir, scifact_dir, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("".join(f"sentence number {i} about topic {i % 7}\n" for i in range(40)))
    out = tmp_path / "w1"
    args = ("whiten", "--model", tiny_bert_dir, "--dim", 8, "--sample", 30)
    assert rqa(*args, "--texts", lines, "--out", out) == 0
    assert json.loads((out / "rqa_whitening.json").read_text())["fitted_on"] == 30
    corpus = tmp_path / "beir"
    corpus.mkdir()
    with open(scifact_dir / "corpus.jsonl") as f:
        (corpus / "corpus.jsonl").write_text("".join(next(f) for _ in range(40)))
    assert rqa(*args, "--texts", corpus, "--out", tmp_path / "w2") == 0


def test_whiten_rejects_more_dimensions_than_the_model_has(
    tiny_bert_dir, sts_dir, tmp_path, capsys
):
    out = tmp_path / "w"
    code = rqa(
        "whiten",
        "--model",
        tiny_bert_dir,
        "--texts",
        sts_dir / "dev.tsv",
        "--dim",
        64,
        "--out",
        out,
    )
    assert (
        code == 2 and "--dim 64 is more than the model's 32 dimensions" in capsys.readouterr().err
    )
    assert not out.exists()


def test_set_overrides_model_settings(tiny_bert_dir, sts_dir, tmp_path, capsys):
    out = tmp_path / "cls.json"
    args = ("evaluate-sts", "--model", tiny_bert_dir, "--sts", sts_dir, "--output", out)
    assert rqa(*args, "--set", "pooling=cls", "--set", "normalize=false") == 0
    written = json.loads(out.read_text())
    assert written["settings"]["pooling"] == "cls" and written["settings"]["normalize"] is False
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="cls", normalize=False)
    pairs = read_sentence_pairs(sts_dir / "dev.tsv")
    expected = evaluate_sts(model, pairs, show_progress=False)["spearman_cosine"]
    assert written["spearman_cosine"] == pytest.approx(expected, abs=1e-9)
    capsys.readouterr()
    for bad, message in [
        ("poolin=cls", "--set expects KEY=VALUE"),
        ("normalize=maybe", "'maybe' is not a bool"),
        ("pool_prefix=false", "needs an averaging pooling"),
    ]:
        extra = ("--set", "pooling=cls") if bad.startswith("pool_prefix") else ()
        assert rqa(*args, "--set", bad, *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
