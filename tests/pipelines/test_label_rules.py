"""The rules that turn re-ranker logits into denoised negatives and pseudo-labels, on hand-made
logits whose right answer is worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from pipelines.stages.augment import pseudo_labels
from pipelines.stages.ce_scores import sigmoid
from pipelines.stages.denoise import split_by_probability, split_relative

# the positive "p" scores 2.0; the rest are mined negatives in retrieval order
LOGITS = {"p": 2.0, "a": 3.5, "b": 2.0, "c": 1.5, "d": 0.9, "e": -4.0}
MINED = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("x", [-800.0, -3.0, 0.0, 0.7, 800.0])
def test_sigmoid_is_the_logistic_function_without_overflow(x):
    expected = 1 / (1 + math.exp(-x)) if x > -700 else 0.0
    assert sigmoid(x) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_relative_keeps_negatives_a_margin_below_the_positive_and_drops_those_above():
    kept, dropped = split_relative(MINED, ["p"], LOGITS, margin=1.0)
    assert kept == ["d", "e"]  # below 2.0 - 1.0
    assert dropped == ["a", "b"]  # at or above the positive; "c" is unsure and left out


def test_relative_margin_and_several_positives():
    kept, dropped = split_relative(MINED, ["p", "x"], {**LOGITS, "x": 1.0}, margin=0.05)
    assert kept == ["d", "e"]  # the lowest positive (1.0) is the floor
    assert dropped == ["a", "b", "c"]


def test_relative_without_a_scored_positive_labels_nothing():
    assert split_relative(MINED, ["missing"], LOGITS, margin=1.0) == ([], [])


def test_probability_thresholds_apply_to_sigmoid_of_the_logits():
    kept, dropped = split_by_probability(MINED, LOGITS, below=0.5, above=0.95)
    assert kept == ["e"]  # sigmoid(-4) = 0.018; every other is above 0.5
    assert dropped == ["a"]  # sigmoid(3.5) = 0.97


def section(mode: str) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, margin=1.0, positive_above=0.9, negative_below=0.2)


def test_relative_pseudo_label_needs_retriever_and_reranker_to_agree_on_the_top():
    ranked = ["a", "c", "d", "e"]
    assert pseudo_labels(ranked, LOGITS, section("relative")) == (["a"], ["c", "d", "e"])
    assert pseudo_labels(["c", "a", "e"], LOGITS, section("relative")) == ([], [])


def test_probability_pseudo_labels():
    assert pseudo_labels(MINED, LOGITS, section("probability")) == (["a"], ["e"])
