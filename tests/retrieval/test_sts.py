"""STS evaluation: the reader of STS-B / senteval_cn files, the correlation coefficients and
similarities against scipy and sentence-transformers, and the whole evaluator against
sentence-transformers' EmbeddingSimilarityEvaluator on the same model and pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import MissingInputError
from retrieval.evaluation import (
    evaluate_sts,
    find_pair_file,
    pair_similarities,
    pearson,
    read_sentence_pairs,
    spearman,
)
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.models import DualEncoder
from retrieval.tables.errors import DataError
from tests.conftest import STSB, minilm_path

KEYS = [
    f"{c}_{s}" for s in ("cosine", "dot", "euclidean", "manhattan") for c in ("spearman", "pearson")
]


def _slice(pairs: SentencePairs, n: int) -> SentencePairs:
    return SentencePairs(pairs.sentences1[:n], pairs.sentences2[:n], pairs.labels[:n], pairs.path)


def _st_evaluator_metrics(st_model, pairs: SentencePairs) -> dict[str, float]:
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    evaluator = EmbeddingSimilarityEvaluator(
        pairs.sentences1,
        pairs.sentences2,
        pairs.labels.tolist(),
        similarity_fn_names=["cosine", "dot", "euclidean", "manhattan"],
    )
    return evaluator(st_model)


# ---- reading ---------------------------------------------------------------------------------


def test_reads_the_stsb_dev_file_with_crlf_and_bare_quotes():
    pairs = read_sentence_pairs(find_pair_file(STSB, "dev"))
    assert len(pairs) == 360  # the excerpt (tests/data/README.md): CRLF, 110 with quotes
    assert sum('"' in a + b for a, b in zip(pairs.sentences1, pairs.sentences2)) >= 110
    assert pairs.sentences1[0] == "A man with a hard hat is dancing."
    assert pairs.sentences2[0] == "A man wearing a hard hat is dancing."
    assert pairs.labels[:4].tolist() == [5.0, 4.75, 5.0, 2.4]
    assert not any(s.endswith("\r") for s in pairs.sentences2)
    assert pairs.labels.min() == 0.0 and pairs.labels.max() == 5.0


def test_reads_the_whole_stsb_dev_file(full_stsb_dir):
    pairs = read_sentence_pairs(find_pair_file(full_stsb_dir, "dev"))
    assert len(pairs) == 1500
    assert pairs.labels.min() == 0.0 and pairs.labels.max() == 5.0


def test_senteval_layout_and_its_valid_split_name(tmp_path):
    folder = tmp_path / "LCQMC"
    folder.mkdir()
    (folder / "LCQMC.valid.data").write_text("今天天气好\t今天天气很好\t1\n你好\t再见\t0\n")
    (folder / "LCQMC.test.data").write_text("一\t二\t0\n")
    pairs = read_sentence_pairs(find_pair_file(folder, "dev"))
    assert pairs.sentences1 == ["今天天气好", "你好"]
    assert pairs.sentences2 == ["今天天气很好", "再见"]
    assert pairs.labels.tolist() == [1.0, 0.0]
    assert find_pair_file(folder, "test").name == "LCQMC.test.data"
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "train.data").write_text("a\tb\t3.5\n")
    assert read_sentence_pairs(find_pair_file(tmp_path / "flat", "train")).labels[0] == 3.5


@pytest.mark.parametrize(
    "content,expected",
    [
        ("a\tb\t1\nc\td\tx1\n", r"x.data:2: field 'label': not a number: 'x1'"),
        ("a\tb\t1\nc\td\n", r"x.data:2: field 'label': missing"),
        ("a\tb\t1\n\nc\td\t1\te\n", r"x.data:3: field '#4': unexpected extra field"),
        ("a\t \t1\n", r"x.data:1: field 'sentence2': empty sentence"),
        ("a\tb\tnan\n", r"x.data:1: field 'label': not a finite number"),
        ("", r"x.data: empty file"),
    ],
)
def test_bad_senteval_lines_are_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "x.data"
    path.write_text(content)
    with pytest.raises(DataError, match=expected) as err:
        read_sentence_pairs(path)
    assert "\n" not in str(err.value)


def test_bad_stsb_lines_name_the_score_field_and_header(tmp_path):
    header = "split\tgenre\tdataset\tyear\tsid\tscore\tsentence1\tsentence2\n"
    good = "dev\tg\td\t2012\t0001\t4.0\tA b.\tC d.\n"
    path = tmp_path / "dev.tsv"
    path.write_text(header + good + "dev\tg\td\t2012\t0002\tfour\tA.\tB.\r\n")
    with pytest.raises(DataError, match=r"dev.tsv:3: field 'score': not a number: 'four'"):
        read_sentence_pairs(path)
    path.write_text(header + "dev\tg\td\t2012\t0002\t1.0\tA.\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: field 'sentence2': missing"):
        read_sentence_pairs(path)
    path.write_text(good)
    with pytest.raises(DataError, match=r"dev.tsv:1: header must name .*missing score"):
        read_sentence_pairs(path)


def test_missing_or_ambiguous_split_files(tmp_path):
    with pytest.raises(MissingInputError, match=r"no file for split 'test' \(looked for test.tsv"):
        find_pair_file(tmp_path, "test")
    (tmp_path / "A.test.data").write_text("a\tb\t1\n")
    (tmp_path / "B.test.data").write_text("a\tb\t1\n")
    with pytest.raises(MissingInputError, match="several files for split 'test'"):
        find_pair_file(tmp_path, "test")


# ---- coefficients and similarities against independent implementations ----------------------


def test_pearson_and_spearman_match_scipy_with_ties():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=200).astype(float)  # many ties, as STS scores have
    y = x + rng.normal(size=200)
    y[::7] = y[0]  # ties on the other side too
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert spearman(x, -y) == pytest.approx(spearmanr(x, -y)[0], abs=1e-12)
    assert np.isnan(pearson(np.ones(5), np.arange(5.0)))


def test_similarities_match_sentence_transformers_pairwise_functions():
    from sentence_transformers import util

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    ours = pair_similarities(a, b)
    theirs = {
        "cosine": util.pairwise_cos_sim(a, b),
        "dot": util.pairwise_dot_score(a, b),
        "euclidean": util.pairwise_euclidean_sim(a, b),
        "manhattan": util.pairwise_manhattan_sim(a, b),
    }
    for name, values in theirs.items():
        np.testing.assert_allclose(ours[name], values.numpy(), rtol=1e-5, atol=1e-5)


# ---- the evaluator against sentence-transformers' ----------------------------------------------


def test_agrees_with_embedding_similarity_evaluator_on_a_tiny_model(tiny_bert_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="mean", normalize=False)
    model.save(tmp_path / "m")
    pairs = _slice(read_sentence_pairs(STSB / "dev.tsv"), 120)
    ours = evaluate_sts(DualEncoder.from_pretrained(tmp_path / "m"), pairs, show_progress=False)
    theirs = _st_evaluator_metrics(SentenceTransformer(str(tmp_path / "m"), device="cpu"), pairs)
    assert list(ours) == KEYS
    for key in KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=2e-4), key
    assert ours["spearman_cosine"] != pytest.approx(ours["spearman_manhattan"], abs=1e-6)


def test_agrees_with_embedding_similarity_evaluator_on_minilm_slice():
    from sentence_transformers import SentenceTransformer

    pairs = _slice(read_sentence_pairs(STSB / "dev.tsv"), 150)
    ours = evaluate_sts(DualEncoder.from_pretrained(minilm_path()), pairs, show_progress=False)
    theirs = _st_evaluator_metrics(SentenceTransformer(str(minilm_path()), device="cpu"), pairs)
    for key in KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=2e-4), key


@pytest.mark.slow
def test_minilm_on_stsb_dev_is_the_published_0_8672(full_stsb_dir):
    pairs = read_sentence_pairs(full_stsb_dir / "dev.tsv")
    ours = evaluate_sts(DualEncoder.from_pretrained(minilm_path()), pairs, show_progress=False)
    assert round(ours["spearman_cosine"], 4) == 0.8672


def test_sts_file_path_can_be_given_directly():
    assert find_pair_file(STSB / "dev.tsv", "ignored") == Path(STSB / "dev.tsv")
