"""listwise_ce_kl in training: the cross collator hands each picked pair's stored teacher score
(NaN kept) beside the very passages the unscored draw picks; the cross module's loss is the
formula's on its own logits; train_worker trains a re-ranker with it end to end."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pyarrow as pa
import pytest
import torch

from retrieval.losses import ListwiseCELoss, ListwiseCETeacherKLLoss
from retrieval.tables import CORPUS, write_table
from retrieval.tables.schemas import SCORED_EXAMPLES
from retrieval.training.collators import CrossCollator
from retrieval.training.examples import ResolvedExamples, resolve_examples
from retrieval.training.modules import CrossTrainingModule
from tests.helpers_dist import run_on_ranks
from tests.retrieval.training.grad_cache_cases import cross_encoder
from tests.retrieval.training.test_grad_cache import _train, needs_gloo
from tests.retrieval.training.test_margin_mse_training import (
    CORPUS_ROWS,
    SCORED,
    RecordingStore,
)

# q1's second positive was not in the retriever's list: no score
WITH_NAN = [SCORED[0], {**SCORED[1], "positive_scores": [8.0, math.nan]}]


@pytest.fixture
def corpus(tmp_path):
    write_table(tmp_path / "corpus", CORPUS_ROWS, CORPUS)
    return tmp_path / "corpus"


def _score_of(rows: list[dict]) -> dict:
    return {pid: score for row in rows
            for pid, score in zip(row["positives"] + row["negatives"],
                                  row["positive_scores"] + row["negative_scores"])}  # fmt: skip


@pytest.mark.parametrize("group_size", [3, 5])  # 5: more than q1's two negatives, drawn again
def test_the_cross_collator_hands_each_picked_pairs_teacher_score(
    corpus, tmp_path, tiny_bert_dir, group_size
):
    table = pa.Table.from_pylist(WITH_NAN, schema=SCORED_EXAMPLES)
    resolve_examples(table, corpus, tmp_path / "resolved", "test", teacher_scores=True)
    examples = ResolvedExamples(tmp_path / "resolved")
    model, score_of = cross_encoder(tiny_bert_dir), _score_of(WITH_NAN)
    scored, plain = RecordingStore(), RecordingStore()
    indices = np.array([1, 0])
    seen_nan = False
    for step in range(6):
        batch = CrossCollator(model, examples, scored, group_size, 7, teacher_scores=True)(
            indices, step
        )
        plain_batch = CrossCollator(model, examples, plain, group_size, 7)(indices, step)
        rows = scored.asked[-1]
        assert rows == plain.asked[-1]  # the same draws as without scores
        assert torch.equal(batch["inputs"]["input_ids"], plain_batch["inputs"]["input_ids"])
        got = batch["teacher"]["scores"]
        assert got.shape == (2, group_size)
        want = torch.tensor([score_of[CORPUS_ROWS[r]["pid"]] for r in rows]).view(2, group_size)
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
        seen_nan |= bool(torch.isnan(got).any())
    assert seen_nan  # q1's unscored positive was drawn in some step


def test_the_cross_module_applies_the_loss_to_its_own_logits(corpus, tmp_path, tiny_bert_dir):
    table = pa.Table.from_pylist(WITH_NAN, schema=SCORED_EXAMPLES)
    resolve_examples(table, corpus, tmp_path / "resolved", "test", teacher_scores=True)
    examples = ResolvedExamples(tmp_path / "resolved")
    model = cross_encoder(tiny_bert_dir, torch.float32)
    batch = CrossCollator(model, examples, RecordingStore(), 3, 7, teacher_scores=True)(
        np.array([0, 1]), 0
    )
    loss_fn = ListwiseCETeacherKLLoss(kl_weight=0.7, temperature=0.5)
    loss = CrossTrainingModule(model, loss_fn, 3)(**batch)
    with torch.no_grad():
        logits = model(batch["inputs"]).view(-1, 3).float()
    assert torch.allclose(loss, loss_fn(logits, batch["teacher"]["scores"]), atol=1e-6)
    # not the CE alone: the KL term is in it
    assert not torch.allclose(loss, ListwiseCELoss()(logits), atol=1e-4)


@needs_gloo
@pytest.mark.slow  # a whole DeepSpeed run; the tests above check the collator and the module
def test_the_loop_trains_a_reranker_with_listwise_ce_kl(tmp_path, scifact_tables, tiny_bert_dir):
    import yaml

    from retrieval.models import CrossEncoder
    from retrieval.tables import read_table
    from retrieval.training.examples import examples_from_qrels

    pids = read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist()
    rng = np.random.default_rng(0)
    rows = []
    for row in examples_from_qrels(scifact_tables, "train").slice(0, 16).to_pylist():
        negatives = [p for p in rng.choice(pids, 6, replace=False) if p not in row["positives"]]
        rows.append({**row, "negatives": negatives[:4],
                     "positive_scores": rng.normal(0.8, 0.1, len(row["positives"])).tolist(),
                     "negative_scores": rng.normal(0.5, 0.1, 4).tolist()})  # fmt: skip
    write_table(tmp_path / "examples", rows, SCORED_EXAMPLES)
    config = {
        "kind": "cross", "loss": "listwise_ce_kl", "model": str(tiny_bert_dir),
        "loss_args": {"kl_weight": 1.0, "temperature": 0.05},
        "output_dir": str(tmp_path / "out"), "group_size": 4, "cross_max_len": 64,
        "data": {"tables": str(scifact_tables), "examples": str(tmp_path / "examples")},
        "batch_size": 4, "max_steps": 2, "log_every": 1,
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    run_on_ranks(partial(_train, str(path)), 1, str(tmp_path))
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and 0 < summary["final_loss"] < 1e4
    start = CrossEncoder.from_pretrained(tiny_bert_dir).model.bert.state_dict()
    trained = CrossEncoder.from_pretrained(tmp_path / "out" / "model").model.bert.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)
