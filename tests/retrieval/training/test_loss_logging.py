"""The training log's loss is the mean over each logging interval, every step's own loss goes
to TensorBoard, and a composite loss's parts are logged beside it: the loop (run_steps) driven
by a stand-in engine whose loss is the real JointListwiseLoss on seeded score lists, checked
against the RocketQAv2 formulas written out here in numpy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from retrieval.losses import JointListwiseLoss
from retrieval.training.loop import run_steps

STEPS, LOG_EVERY, QUERIES, LIST = 7, 3, 4, 5


def score_lists() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [
        (torch.randn(QUERIES, LIST, generator=gen), 2 * torch.randn(QUERIES, LIST, generator=gen))
        for _ in range(STEPS)
    ]


class ListEngine:
    """What run_steps asks of a DeepSpeed engine; step ``i`` returns the loss of list ``i``."""

    def __init__(self, lists):
        self.lists, self.device = lists, torch.device("cpu")
        self.module = SimpleNamespace(loss=JointListwiseLoss())
        self.optimizer = SimpleNamespace(param_groups=[{"lr": 1e-3}])

    def __call__(self, step: dict) -> torch.Tensor:
        return self.module.loss(*self.lists[int(step["i"])])

    def train(self) -> None:
        pass

    def backward(self, loss: torch.Tensor) -> None:
        pass

    def step(self) -> None:
        pass


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def by_hand(s_de: torch.Tensor, s_ce: torch.Tensor) -> dict[str, float]:
    """RocketQAv2: KL(P_de || P_ce) averaged over queries, the re-ranker's listwise CE (positive
    in column 0), and the retriever's listwise CE (logged, not a term of the loss)."""
    log_de, log_ce = log_softmax(s_de.double().numpy()), log_softmax(s_ce.double().numpy())
    kl = float((np.exp(log_de) * (log_de - log_ce)).sum(axis=1).mean())
    return {"kl": kl, "reranker_ce": float(-log_ce[:, 0].mean()),
            "retriever_ce": float(-log_de[:, 0].mean())}  # fmt: skip


def test_logged_loss_is_the_interval_mean_with_its_parts(tmp_path):
    lists = score_lists()
    config = SimpleNamespace(
        output_dir=str(tmp_path), kind="joint", log_every=LOG_EVERY, checkpoint_every=1000,
        batch_size=QUERIES, keep_checkpoints=1,
    )  # fmt: skip
    sampler = SimpleNamespace(indices=lambda step, rank: step)
    collate = lambda step, _: {"step": {"i": torch.tensor(step)}}  # noqa: E731
    summary = run_steps(ListEngine(lists), collate, sampler, config, 0, STEPS, 0, 1)

    parts = [by_hand(*pair) for pair in lists]
    totals = [p["kl"] + p["reranker_ce"] for p in parts]
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").open()]
    assert [r["step"] for r in records] == [3, 6, 7]
    for record, (lo, hi) in zip(records, [(0, 3), (3, 6), (6, 7)]):
        assert record["loss"] == pytest.approx(np.mean(totals[lo:hi]), rel=1e-6)
        for name in ("kl", "reranker_ce", "retriever_ce"):
            mean = np.mean([p[name] for p in parts[lo:hi]])
            assert record[f"loss/{name}"] == pytest.approx(mean, rel=1e-6), name
        assert record["loss"] == pytest.approx(record["loss/kl"] + record["loss/reranker_ce"])
    assert summary["final_loss"] == pytest.approx(totals[-1], rel=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    per_step = [(e.step, e.value) for e in events.Scalars("train/loss_step")]
    assert per_step == [(i + 1, pytest.approx(t, rel=1e-6)) for i, t in enumerate(totals)]
    interval = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert interval == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records]
    kl = [(e.step, e.value) for e in events.Scalars("loss/kl")]
    assert kl == [(r["step"], pytest.approx(r["loss/kl"], rel=1e-6)) for r in records]
