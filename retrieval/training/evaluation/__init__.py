"""Evaluation while training: one small evaluator per kind (dev_set.py draws the dev queries and
their passages once; retriever.py, reranker.py, sts.py score a model on them) and the loop's
side of it (during_training.py: when, on which rank, without touching the training, and which
step is best). The metrics are retrieval/metrics' and retrieval/evaluation's, reused."""

from retrieval.training.evaluation.during_training import EvalDuringTraining

__all__ = ["EvalDuringTraining"]
