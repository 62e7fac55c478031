"""Pair classification (as MTEB's): is a pair a paraphrase / duplicate, judged by a similarity
threshold? Best-accuracy and best-F1 thresholds, average precision, and a threshold found on one
split applied to another.

A pair is predicted positive when its similarity is at least the threshold; euclidean and
manhattan similarities are negated distances (see similarity.py), so the same rule holds.
Holds no file reading and no CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.errors import ConfigError
from retrieval.evaluation.pair_embeddings import embed_pairs
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.evaluation.similarity import pair_similarities
from retrieval.models.dual_encoder import DualEncoder


def binary_labels(pairs: SentencePairs, positive_at: float | None = None) -> np.ndarray:
    """0/1 labels: as given when they are all 0 or 1, else ``label >= positive_at``."""
    if positive_at is not None:
        return (pairs.labels >= positive_at).astype(np.int64)
    if not np.isin(pairs.labels, (0.0, 1.0)).all():
        found = ", ".join(f"{x:g}" for x in np.unique(pairs.labels)[:5])
        raise ConfigError(
            f"{pairs.path}: labels are not all 0 or 1 (found {found}, ...): give a cut such as "
            "--positive-at 4.0 (label >= cut is a positive pair)"
        )
    return pairs.labels.astype(np.int64)


@dataclass
class _Cuts:
    """Every way to cut the scores sorted high to low: cut ``c`` (0..m, m distinct scores)
    predicts positive the pairs with one of the ``c`` highest distinct scores."""

    thresholds: np.ndarray  # [m + 1]: scores >= thresholds[c] are the predicted positives
    true_positives: np.ndarray  # [m + 1]
    predicted: np.ndarray  # [m + 1] predicted positives
    positives: int
    total: int


def _cuts(scores: np.ndarray, labels: np.ndarray) -> _Cuts:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.shape != labels.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-D")
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], labels[order]
    last_of_group = np.r_[ordered[1:] != ordered[:-1], True]  # end of each run of equal scores
    values = ordered[last_of_group]  # distinct, high to low
    true_positives = np.r_[0, np.cumsum(hits)[last_of_group]]
    predicted = np.r_[0, np.flatnonzero(last_of_group) + 1]
    # a threshold strictly between neighbouring distinct scores, so it carries to other splits
    thresholds = np.empty(len(values) + 1)
    thresholds[0] = np.nextafter(values[0], np.inf)  # nothing is predicted positive
    middle = (values[:-1] + values[1:]) / 2
    thresholds[1:-1] = np.where(middle > values[1:], middle, values[:-1])
    thresholds[-1] = values[-1]  # everything is predicted positive
    return _Cuts(thresholds, true_positives, predicted, int(labels.sum()), len(labels))


def _accuracy(tp: np.ndarray, predicted: np.ndarray, positives: int, total: int) -> np.ndarray:
    true_negatives = (total - positives) - (predicted - tp)
    return (tp + true_negatives) / total


def _f1(tp: np.ndarray, predicted: np.ndarray, positives: int) -> np.ndarray:
    """``2 TP / (2 TP + FP + FN) = 2 TP / (predicted + positives)``; 0 when both are 0."""
    denominator = predicted + positives
    return np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)


def best_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(accuracy, threshold)`` maximising ``mean(1[score >= t] == label)`` over every cut;
    the highest threshold among equally good ones."""
    cuts = _cuts(scores, labels)
    accuracy = _accuracy(cuts.true_positives, cuts.predicted, cuts.positives, cuts.total)
    best = int(np.argmax(accuracy))
    return float(accuracy[best]), float(cuts.thresholds[best])


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, float]:
    """``(f1, precision, recall, threshold)`` maximising F1 of ``score >= t`` over every cut."""
    cuts = _cuts(scores, labels)
    f1 = _f1(cuts.true_positives, cuts.predicted, cuts.positives)
    best = int(np.argmax(f1))
    tp, predicted = cuts.true_positives[best], cuts.predicted[best]
    precision = tp / predicted if predicted else 0.0
    recall = tp / cuts.positives if cuts.positives else 0.0
    return float(f1[best]), float(precision), float(recall), float(cuts.thresholds[best])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """``AP = sum_c (R_c - R_{c-1}) P_c`` over the distinct scores high to low, with ``P_c`` and
    ``R_c`` the precision and recall of ``score >= (c-th distinct score)`` (tied scores enter
    together; sklearn's ``average_precision_score``). NaN without positives."""
    cuts = _cuts(scores, labels)
    if cuts.positives == 0:
        return float("nan")
    tp, predicted = cuts.true_positives[1:], cuts.predicted[1:]
    recall = tp / cuts.positives
    precision = tp / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, F1, precision and recall of ``score >= threshold``."""
    predicted = np.asarray(scores) >= threshold
    labels = np.asarray(labels).astype(bool)
    tp = int(np.sum(predicted & labels))
    n_predicted, positives = int(predicted.sum()), int(labels.sum())
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "f1": 2 * tp / (n_predicted + positives) if n_predicted + positives else 0.0,
        "precision": tp / n_predicted if n_predicted else 0.0,
        "recall": tp / positives if positives else 0.0,
    }


@dataclass
class PairThresholds:
    """Thresholds found on one split: ``{similarity: (accuracy threshold, F1 threshold)}``."""

    split: str
    thresholds: dict[str, tuple[float, float]]


def classification_metrics(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray, split: str
) -> tuple[dict[str, float], PairThresholds]:
    """Per similarity: best accuracy and F1 with their thresholds, precision and recall at the
    F1 threshold, and AP; then the maximum of each over the similarities (MTEB's ``max_*``)."""
    metrics: dict[str, float] = {}
    thresholds = {}
    for name, scores in pair_similarities(a, b).items():
        accuracy, accuracy_threshold = best_accuracy(scores, labels)
        f1, precision, recall, f1_threshold = best_f1(scores, labels)
        metrics.update(
            {
                f"{name}_accuracy": accuracy,
                f"{name}_accuracy_threshold": accuracy_threshold,
                f"{name}_f1": f1,
                f"{name}_precision": precision,
                f"{name}_recall": recall,
                f"{name}_f1_threshold": f1_threshold,
                f"{name}_ap": average_precision(scores, labels),
            }
        )
        thresholds[name] = (accuracy_threshold, f1_threshold)
    _add_max(metrics, thresholds)
    return metrics, PairThresholds(split, thresholds)


def transferred_metrics(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray, found: PairThresholds
) -> dict[str, float]:
    """The thresholds of ``found`` applied to other pairs: accuracy at the accuracy threshold,
    F1 / precision / recall at the F1 threshold; AP needs no threshold and is the pairs' own."""
    metrics: dict[str, float] = {}
    for name, scores in pair_similarities(a, b).items():
        accuracy_threshold, f1_threshold = found.thresholds[name]
        at_f1 = at_threshold(scores, labels, f1_threshold)
        metrics.update(
            {
                f"{name}_accuracy": at_threshold(scores, labels, accuracy_threshold)["accuracy"],
                f"{name}_accuracy_threshold": accuracy_threshold,
                f"{name}_f1": at_f1["f1"],
                f"{name}_precision": at_f1["precision"],
                f"{name}_recall": at_f1["recall"],
                f"{name}_f1_threshold": f1_threshold,
                f"{name}_ap": average_precision(scores, labels),
            }
        )
    _add_max(metrics, found.thresholds)
    return metrics


def _add_max(metrics: dict[str, float], names) -> None:
    for measure in ("accuracy", "f1", "ap"):
        metrics[f"max_{measure}"] = max(metrics[f"{name}_{measure}"] for name in names)


def evaluate_pair_classification(
    model: DualEncoder,
    pairs: SentencePairs,
    split: str,
    positive_at: float | None = None,
    apply_to: dict[str, SentencePairs] | None = None,
    side: str = "query",
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """``{split: metrics, other: metrics at split's thresholds, ...}`` for ``pairs`` of ``split``
    and each split of ``apply_to``; labels binarised by :func:`binary_labels`."""
    labels = binary_labels(pairs, positive_at)
    others = {name: binary_labels(p, positive_at) for name, p in (apply_to or {}).items()}
    a, b = embed_pairs(model, pairs, side, batch_size, precision, show_progress)
    own, found = classification_metrics(a, b, labels, split)
    results = {split: own}
    for name, other in (apply_to or {}).items():
        a, b = embed_pairs(model, other, side, batch_size, precision, show_progress)
        results[name] = transferred_metrics(a, b, others[name], found)
    return results
