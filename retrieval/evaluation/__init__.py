"""Sentence-embedding evaluators: STS correlation and pair classification, one per module.

Retrieval evaluation (nDCG, MRR, recall of a run) is retrieval/evaluator.py and the labels it
reads retrieval/tables/labels.py; this package holds none of it.
"""

from retrieval.evaluation.correlation import pearson, spearman
from retrieval.evaluation.pair_classification import (
    PairThresholds,
    average_precision,
    best_accuracy,
    best_f1,
    binary_labels,
    evaluate_pair_classification,
)
from retrieval.evaluation.pair_files import SentencePairs, find_pair_file, read_sentence_pairs
from retrieval.evaluation.similarity import SIMILARITIES, pair_similarities
from retrieval.evaluation.sts import evaluate_sts

__all__ = [
    "SIMILARITIES",
    "PairThresholds",
    "SentencePairs",
    "average_precision",
    "best_accuracy",
    "best_f1",
    "binary_labels",
    "evaluate_pair_classification",
    "evaluate_sts",
    "find_pair_file",
    "pair_similarities",
    "pearson",
    "read_sentence_pairs",
    "spearman",
]
