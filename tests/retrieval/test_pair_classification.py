"""Pair classification: threshold search against a brute-force scan over every candidate
threshold, average precision against sklearn (or the formula written out when sklearn is
missing), and thresholds carried from one split to another.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.errors import ConfigError
from retrieval.evaluation import (
    average_precision,
    best_accuracy,
    best_f1,
    binary_labels,
    evaluate_pair_classification,
)
from retrieval.evaluation.pair_classification import at_threshold
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.models import DualEncoder


def _random_case(seed: int, n: int = 60, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    scores = labels * 0.6 + rng.normal(size=n)
    if ties:
        scores = np.round(scores, 1)  # many equal scores, some shared by both labels
    return scores, labels


def _brute_force(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best accuracy and best F1 of ``score >= t`` over t in every score and above the max."""
    best_acc, best_f1 = 0.0, 0.0
    for t in [*np.unique(scores), np.inf]:
        predicted = scores >= t
        tp = np.sum(predicted & (labels == 1))
        fp = np.sum(predicted & (labels == 0))
        fn = np.sum(~predicted & (labels == 1))
        best_acc = max(best_acc, np.mean(predicted == (labels == 1)))
        if tp:
            best_f1 = max(best_f1, 2 * tp / (2 * tp + fp + fn))
    return float(best_acc), float(best_f1)


def _ap_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    try:
        from sklearn.metrics import average_precision_score
    except ImportError:  # the formula: sum over distinct thresholds of (R_n - R_{n-1}) P_n
        total, previous_recall = 0.0, 0.0
        for t in sorted(set(scores.tolist()), reverse=True):
            predicted = scores >= t
            tp = np.sum(predicted & (labels == 1))
            recall = tp / labels.sum()
            total += (recall - previous_recall) * tp / predicted.sum()
            previous_recall = recall
        return float(total)
    return float(average_precision_score(labels, scores))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_thresholds_are_the_best_of_a_brute_force_scan(seed, ties):
    scores, labels = _random_case(seed, ties=ties)
    accuracy, accuracy_threshold = best_accuracy(scores, labels)
    f1, precision, recall, f1_threshold = best_f1(scores, labels)
    brute_accuracy, brute_f1 = _brute_force(scores, labels)
    assert accuracy == pytest.approx(brute_accuracy, abs=1e-12)
    assert f1 == pytest.approx(brute_f1, abs=1e-12)
    # the threshold reported gives that figure when applied, with its precision and recall
    assert at_threshold(scores, labels, accuracy_threshold)["accuracy"] == pytest.approx(accuracy)
    applied = at_threshold(scores, labels, f1_threshold)
    assert (applied["f1"], applied["precision"], applied["recall"]) == pytest.approx(
        (f1, precision, recall)
    )


def test_threshold_lies_between_scores_and_prefers_the_highest_cut():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    labels = np.array([1, 1, 0, 0])
    accuracy, threshold = best_accuracy(scores, labels)
    assert accuracy == 1.0 and threshold == pytest.approx(0.55)
    # every pair negative: the best cut predicts nothing positive, above the top score
    accuracy, threshold = best_accuracy(scores, np.zeros(4, dtype=int))
    assert accuracy == 1.0 and threshold > 0.9
    assert at_threshold(scores, np.zeros(4), threshold)["accuracy"] == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_sklearn_with_and_without_ties(seed):
    for ties in (False, True):
        scores, labels = _random_case(seed, ties=ties)
        assert average_precision(scores, labels) == pytest.approx(
            _ap_reference(scores, labels), abs=1e-12
        )


def test_average_precision_of_a_perfect_and_a_reversed_ranking():
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    assert average_precision(scores, np.array([1, 1, 0, 0])) == 1.0
    assert average_precision(scores, np.array([0, 0, 1, 1])) == pytest.approx((1 / 3 + 2 / 4) / 2)


def _pairs(labels: list[float]) -> SentencePairs:
    n = len(labels)
    return SentencePairs(["a"] * n, ["b"] * n, np.asarray(labels, dtype=float), "x.tsv")


def test_binary_labels_need_a_cut_for_graded_scores():
    assert binary_labels(_pairs([0, 1, 1])).tolist() == [0, 1, 1]
    assert binary_labels(_pairs([0.5, 4.0, 5.0]), positive_at=4.0).tolist() == [0, 1, 1]
    with pytest.raises(ConfigError, match=r"x.tsv: labels are not all 0 or 1 .*--positive-at"):
        binary_labels(_pairs([0.5, 4.0, 5.0]))


def test_thresholds_found_on_dev_are_applied_to_test(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir)
    words = ["cat", "dog", "car", "tree", "house", "river", "sun", "moon", "book", "pen"]
    first = [f"the {w} is here" for w in words]
    second = [f"a {w} is here" if i % 2 else f"nothing about {w}s" for i, w in enumerate(words)]
    dev = SentencePairs(first, second, np.array([i % 2 for i in range(10)], float), "dev")
    test = SentencePairs(second, first[::-1], np.array([1, 0] * 5, float), "test")
    results = evaluate_pair_classification(
        model, dev, "dev", apply_to={"test": test}, show_progress=False
    )
    assert set(results) == {"dev", "test"}
    for name in ("cosine", "dot", "euclidean", "manhattan"):
        for key in ("accuracy_threshold", "f1_threshold"):
            assert results["test"][f"{name}_{key}"] == results["dev"][f"{name}_{key}"]
    # test's figures are those of dev's thresholds on test's own similarities
    from retrieval.evaluation.pair_embeddings import embed_pairs
    from retrieval.evaluation.similarity import pair_similarities

    a, b = embed_pairs(model, test, show_progress=False)
    cosine = pair_similarities(a, b)["cosine"]
    threshold = results["dev"]["cosine_accuracy_threshold"]
    expected = at_threshold(cosine, test.labels, threshold)["accuracy"]
    assert results["test"]["cosine_accuracy"] == expected
    assert results["test"]["cosine_ap"] == pytest.approx(average_precision(cosine, test.labels))
    names = ("cosine", "dot", "euclidean", "manhattan")
    assert results["dev"]["max_ap"] == max(results["dev"][f"{n}_ap"] for n in names)
