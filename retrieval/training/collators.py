"""Turn example indices into tokenized model inputs: queries with 1 positive + H negatives
(dual encoder), groups of 1 positive + n-1 negatives (cross-encoder), or sentence pairs.

Passage choice is seeded by (seed, step, example), so a resumed run draws the same passages.
"""

from __future__ import annotations

import numpy as np
import torch

from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.examples import ResolvedExamples
from retrieval.training.pairs import PairStore
from retrieval.training.passages import PassageStore


def pick_passages(
    rng: np.random.Generator,
    positives: np.ndarray,
    negatives: np.ndarray,
    n_neg: int,
    corpus: int,
    random_negatives: bool = False,
) -> list[int]:
    """One positive, then ``n_neg`` negatives: without repetition while the pool lasts, with
    repetition beyond it. An example with no negatives at all gets random corpus passages only
    when ``random_negatives`` says so (almost surely irrelevant, as in DPR's in-batch setting);
    otherwise it is an error, which retrieval/training/negatives.py reports before training."""
    chosen = [int(rng.choice(positives))]
    if n_neg == 0:
        return chosen
    if len(negatives) == 0:
        if not random_negatives:
            raise ValueError("an example has no negatives and random_negatives is off")
        pool = rng.integers(0, corpus, size=n_neg)
    elif len(negatives) >= n_neg:
        pool = rng.choice(negatives, size=n_neg, replace=False)
    else:
        pool = rng.choice(negatives, size=n_neg, replace=True)
    return chosen + [int(x) for x in pool]


def known_positive_rows(examples: ResolvedExamples, indices: np.ndarray) -> torch.Tensor:
    """``[B, K]``: each example's known positive corpus rows, padded with ``-1`` (no row)."""
    known = [examples.known_positives(int(i)) for i in indices]
    padded = torch.full((len(known), max(len(k) for k in known)), -1, dtype=torch.int64)
    for row, rows in enumerate(known):
        padded[row, : len(rows)] = torch.from_numpy(rows)
    return padded


def pick_scored(
    rng: np.random.Generator, examples: ResolvedExamples, i: int, n_neg: int
) -> tuple[list[int], list[float]]:
    """pick_passages over example ``i``'s positions, so each chosen passage comes with its
    teacher score: the same draws, hence the same passages, as pick_passages over its rows."""
    ex_pos, ex_neg = examples.positives[i], examples.negatives[i]
    where = pick_passages(rng, np.arange(len(ex_pos)), np.arange(len(ex_neg)), n_neg, 0)
    rows = [int(ex_pos[where[0]])] + [int(ex_neg[j]) for j in where[1:]]
    scores = [float(examples.positive_scores[i][where[0]])]
    scores += [float(examples.negative_scores[i][j]) for j in where[1:]]
    return rows, scores


class DualCollator:
    """Queries with 1 positive + ``hard_negatives`` passages each; with ``mask_false_negatives``,
    also the corpus rows of those passages and each query's known positives
    (``false_negatives``), so the loss can leave out any candidate that is a known positive of
    the query scoring it (retrieval/losses/false_negatives.py); with ``teacher_scores`` (loss
    margin_mse), also the teacher's score of every passage: ``teacher: {scores: [B, 1+H]}``."""

    def __init__(
        self,
        model: DualEncoder,
        examples: ResolvedExamples,
        passages: PassageStore,
        hard_negatives: int,
        seed: int,
        random_negatives: bool = False,
        mask_false_negatives: bool = False,
        teacher_scores: bool = False,
    ):
        self.model, self.examples, self.passages = model, examples, passages
        self.hard_negatives, self.seed = hard_negatives, seed
        self.random_negatives, self.teacher_scores = random_negatives, teacher_scores
        self.mask_false_negatives = mask_false_negatives

    def __call__(self, indices: np.ndarray, step: int) -> dict[str, dict[str, torch.Tensor]]:
        rows: list[int] = []
        scores: list[list[float]] = []
        for i in indices:
            rng = np.random.default_rng([self.seed, step, int(i)])
            if self.teacher_scores:
                picked, teacher = pick_scored(rng, self.examples, int(i), self.hard_negatives)
                rows += picked
                scores.append(teacher)
                continue
            ex_pos, ex_neg = self.examples.positives[i], self.examples.negatives[i]
            rows += pick_passages(
                rng, ex_pos, ex_neg, self.hard_negatives, len(self.passages), self.random_negatives
            )
        titles, texts = self.passages.get(rows)
        batch = {
            "query_inputs": self.model.tokenize_queries(
                [self.examples.queries[i] for i in indices]
            ),
            "passage_inputs": self.model.tokenize_passages(titles, texts),
        }
        if self.mask_false_negatives:
            batch["false_negatives"] = {
                "passage_rows": torch.tensor(rows, dtype=torch.int64),
                "known_positives": known_positive_rows(self.examples, indices),
            }
        if self.teacher_scores:
            batch["teacher"] = {"scores": torch.tensor(scores, dtype=torch.float32)}
        return batch


class CrossCollator:
    """Groups of (query, passage) pairs, the positive first; with ``teacher_scores`` (loss
    listwise_ce_kl), also the stored teacher score of every pair: ``teacher: {scores: [B, G]}``,
    the same passages as the unscored draw."""

    def __init__(
        self,
        model: CrossEncoder,
        examples: ResolvedExamples,
        passages: PassageStore,
        group_size: int,
        seed: int,
        random_negatives: bool = False,
        teacher_scores: bool = False,
    ):
        self.model, self.examples, self.passages = model, examples, passages
        self.group_size, self.seed = group_size, seed
        self.random_negatives, self.teacher_scores = random_negatives, teacher_scores

    def __call__(self, indices: np.ndarray, step: int) -> dict[str, dict[str, torch.Tensor]]:
        rows: list[int] = []
        queries: list[str] = []
        scores: list[list[float]] = []
        for i in indices:
            rng = np.random.default_rng([self.seed, step, int(i)])
            if self.teacher_scores:
                picked, teacher = pick_scored(rng, self.examples, int(i), self.group_size - 1)
                rows += picked
                scores.append(teacher)
            else:
                ex_pos, ex_neg = self.examples.positives[i], self.examples.negatives[i]
                rows += pick_passages(rng, ex_pos, ex_neg, self.group_size - 1,
                                      len(self.passages), self.random_negatives)  # fmt: skip
            queries += [self.examples.queries[i]] * self.group_size
        titles, texts = self.passages.get(rows)
        batch = {"inputs": self.model.tokenize(queries, titles, texts)}
        if self.teacher_scores:
            batch["teacher"] = {"scores": torch.tensor(scores, dtype=torch.float32)}
        return batch


class JointCollator:
    """RocketQAv2 lists: the same 1 + n-1 passages go to the retriever and the re-ranker."""

    def __init__(
        self,
        dual: DualEncoder,
        cross: CrossEncoder,
        examples: ResolvedExamples,
        passages: PassageStore,
        group_size: int,
        seed: int,
        random_negatives: bool = False,
    ):
        self.dual, self.examples = dual, examples
        self.cross = CrossCollator(cross, examples, passages, group_size, seed, random_negatives)
        self.passages, self.group_size, self.seed = passages, group_size, seed
        self.random_negatives = random_negatives

    def __call__(self, indices: np.ndarray, step: int) -> dict[str, dict[str, torch.Tensor]]:
        rows: list[int] = []
        for i in indices:
            rng = np.random.default_rng([self.seed, step, int(i)])
            ex_pos, ex_neg = self.examples.positives[i], self.examples.negatives[i]
            rows += pick_passages(
                rng, ex_pos, ex_neg, self.group_size - 1, len(self.passages), self.random_negatives
            )
        titles, texts = self.passages.get(rows)
        queries = [self.examples.queries[i] for i in indices]
        repeated = [q for q in queries for _ in range(self.group_size)]
        return {
            "query_inputs": self.dual.tokenize_queries(queries),
            "passage_inputs": self.dual.tokenize_passages(titles, texts),
            "pair_inputs": self.cross.model.tokenize(repeated, titles, texts),
        }


class PairCollator:
    """Sentence pairs (retrieval/training/pairs.py): both sentences tokenized on the query side,
    as `rqa evaluate-sts` reads both (STS is symmetric), with their scores and positive flags.
    A plain sentence comes back as its own partner, for two dropout views (SimCSE)."""

    def __init__(self, model: DualEncoder, pairs: PairStore):
        self.model, self.pairs = model, pairs

    def __call__(self, indices: np.ndarray, step: int) -> dict[str, dict[str, torch.Tensor]]:
        first, second, score, positive = self.pairs.get(indices)
        return {
            "first": self.model.tokenize_queries(first),
            "second": self.model.tokenize_queries(second),
            "targets": {"score": torch.from_numpy(score), "positive": torch.from_numpy(positive)},
        }
