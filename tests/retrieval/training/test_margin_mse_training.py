"""MarginMSE in the training modules: train_joint's form under bf16 models equals the formula
in float64 from the same logits and trains both models in a step (the re-ranker through its own
CE alone); a dual run distils the examples' stored teacher scores, which resolve_examples
carries (or refuses in one line when missing) and the collator hands over beside the very
passages the unscored draw picks; gradient caching gives the same loss and gradients."""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import pytest
import torch

from retrieval.losses import JointMarginMSELoss, MarginMSELoss
from retrieval.tables import CORPUS, DataError, write_table
from retrieval.tables.schemas import SCORED_EXAMPLES
from retrieval.training.cached_modules import with_grad_cache
from retrieval.training.collators import DualCollator
from retrieval.training.config import GradCacheConfig
from retrieval.training.examples import ResolvedExamples, resolve_examples
from retrieval.training.modules import DualTrainingModule, JointTrainingModule
from tests.helpers_dist import run_on_ranks
from tests.retrieval.training.grad_cache_cases import (
    GROUP,
    assert_same_gradients,
    cross_encoder,
    dual_batch,
    dual_encoder,
    gradients,
    joint_batch,
)
from tests.retrieval.training.test_grad_cache import _train, needs_gloo
from tests.retrieval.training.test_loss_precision import (
    joint_losses_under_bf16,
    listwise_written_out,
    msmarco_style_dual,
)


def margin_mse_written_out(s_de: torch.Tensor, s_ce: torch.Tensor) -> torch.Tensor:
    student = s_de[:, :1] - s_de[:, 1:]
    teacher = s_ce[:, :1] - s_ce[:, 1:]
    return ((student - teacher) ** 2).mean()


def assert_fp32_not_bf16(loss, exact, in_bf16, scale: float) -> None:
    """As test_loss_precision's check, for a squared loss: float32 resolves scores of ``scale``
    to ~1e-6 x scale each, and squaring a gap multiplies that by the gap (~sqrt of the loss)."""
    assert loss.dtype == torch.float32 and exact.dtype == torch.float64
    tolerance = 1e-6 * max(1.0, scale) * max(1.0, float(exact) ** 0.5)
    assert abs(float(loss) - float(exact)) <= tolerance, (float(loss), float(exact))
    assert abs(float(in_bf16) - float(exact)) > 10 * tolerance, (float(in_bf16), float(exact))


def test_joint_margin_mse_is_float32_under_bf16_models(tiny_bert_dir):
    losses = joint_losses_under_bf16(tiny_bert_dir, JointMarginMSELoss(), margin_mse_written_out)
    assert_fp32_not_bf16(*losses)


def test_a_joint_training_step_with_margin_mse_trains_both_models(tiny_bert_dir):
    """One AdamW step of the joint module: both models move; the re-ranker's gradient is that
    of its listwise CE alone (its logits are the retriever's detached teacher)."""
    dual = dual_encoder(tiny_bert_dir, torch.float32)
    cross = cross_encoder(tiny_bert_dir, torch.float32)
    module = JointTrainingModule(dual, cross, JointMarginMSELoss(), GROUP).eval()
    batch = joint_batch(dual, cross)
    loss = module(**batch)
    loss.backward()
    got = gradients(module.cross)
    module.zero_grad()
    listwise_written_out(cross(batch["pair_inputs"]).view(-1, GROUP)).backward()
    want = gradients(module.cross)
    assert got.keys() == want.keys() and max(float(g.abs().max()) for g in want.values()) > 0
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-9, msg=name)
    module.zero_grad()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module(**batch).backward()
    optimizer.step()
    moved = {n.split(".")[0] for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"dual", "cross"}
    assert torch.isfinite(loss) and module.loss.last_margin_mse > 0


def test_a_dual_module_distils_the_teacher_scores_of_its_groups(tiny_bert_dir):
    model = msmarco_style_dual(tiny_bert_dir)
    batch = dual_batch(model)
    teacher = torch.randn(len(batch["query_inputs"]["input_ids"]), GROUP) * 5
    module = DualTrainingModule(model, MarginMSELoss())
    with torch.no_grad():
        loss = module(**batch, teacher={"scores": teacher})
        q, p = model(**batch)

    def written_out(q, p):
        s_de = torch.einsum("qd,qnd->qn", q, p.view(q.shape[0], GROUP, -1))
        return margin_mse_written_out(s_de, teacher.to(q.dtype))

    scale = float((q.double() @ p.double().T).abs().max())
    assert_fp32_not_bf16(loss, written_out(q.double(), p.double()), written_out(q, p), scale)


def test_gradient_caching_gives_the_same_margin_mse_step(tiny_bert_dir):
    model = dual_encoder(tiny_bert_dir).eval()
    batch = dual_batch(model)
    teacher = {"scores": torch.randn(6, GROUP, dtype=torch.float64) * 5}
    plain = DualTrainingModule(model, MarginMSELoss())
    want_loss = plain(**batch, teacher=teacher)
    want_loss.backward()
    want = gradients(plain)
    plain.zero_grad()
    cached = with_grad_cache(plain, GradCacheConfig(query_chunk=2, passage_chunk=4))
    got_loss = cached(**batch, teacher=teacher)
    got_loss.backward()
    assert torch.allclose(got_loss, want_loss.detach(), atol=1e-10)
    assert_same_gradients(gradients(cached), want, rtol=1e-6, atol=1e-9)


# ---- stored teacher scores: resolved, checked, collated --------------------------------------

CORPUS_ROWS = [{"pid": f"d{i}", "title": "", "text": f"passage {i}"} for i in range(10)]
SCORED = [
    {"qid": "q0", "query": "first", "positives": ["d0"], "negatives": ["d1", "d2", "d3"],
     "positive_scores": [9.0], "negative_scores": [1.0, 2.0, 3.0]},
    {"qid": "q1", "query": "second", "positives": ["d4", "d5"], "negatives": ["d6", "d7"],
     "positive_scores": [8.0, 7.5], "negative_scores": [-1.0, -2.0]},
]  # fmt: skip


@pytest.fixture
def corpus(tmp_path):
    write_table(tmp_path / "corpus", CORPUS_ROWS, CORPUS)
    return tmp_path / "corpus"


def test_resolved_examples_carry_the_teacher_scores(corpus, tmp_path):
    table = pa.Table.from_pylist(SCORED, schema=SCORED_EXAMPLES)
    resolve_examples(table, corpus, tmp_path / "resolved", "test", teacher_scores=True)
    resolved = ResolvedExamples(tmp_path / "resolved")
    assert [s.tolist() for s in resolved.positive_scores] == [[9.0], [8.0, 7.5]]
    assert [s.tolist() for s in resolved.negative_scores] == [[1.0, 2.0, 3.0], [-1.0, -2.0]]


@pytest.mark.parametrize(
    "change, says",
    [
        ({"drop": True}, "has no teacher scores"),
        ({"negative_scores": [1.0, 2.0]}, "field 'negative_scores': a score missing"),
        ({"positive_scores": [None]}, "field 'positive_scores': a score missing"),
        ({"positive_scores": None}, "field 'positive_scores': a score missing"),
    ],
)
def test_missing_teacher_scores_are_one_line(corpus, tmp_path, change, says):
    rows = [dict(r) for r in SCORED]
    if change.pop("drop", False):
        table = pa.Table.from_pylist([{k: r[k] for k in EXAMPLE_KEYS} for r in rows])
    else:
        rows[0].update(change)
        table = pa.Table.from_pylist(rows, schema=SCORED_EXAMPLES)
    with pytest.raises(DataError, match=says) as err:
        resolve_examples(table, corpus, tmp_path / "resolved", "test", teacher_scores=True)
    assert "\n" not in str(err.value)


EXAMPLE_KEYS = ("qid", "query", "positives", "negatives")


class RecordingStore:
    """Stands in for the PassageStore: remembers the rows asked for."""

    def __init__(self):
        self.asked: list[list[int]] = []

    def __len__(self) -> int:
        return len(CORPUS_ROWS)

    def get(self, rows):
        self.asked.append(list(rows))
        return [None] * len(rows), [CORPUS_ROWS[r]["text"] for r in rows]


@pytest.mark.parametrize("hard_negatives", [2, 4])  # 4: more than q1's two, drawn again
def test_the_collator_hands_each_picked_passages_teacher_score(
    corpus, tmp_path, tiny_bert_dir, hard_negatives
):
    table = pa.Table.from_pylist(SCORED, schema=SCORED_EXAMPLES)
    resolve_examples(table, corpus, tmp_path / "resolved", "test", teacher_scores=True)
    examples = ResolvedExamples(tmp_path / "resolved")
    model = dual_encoder(tiny_bert_dir)
    score_of = {
        pid: score
        for row in SCORED
        for pid, score in zip(
            row["positives"] + row["negatives"], row["positive_scores"] + row["negative_scores"]
        )
    }
    scored, plain = RecordingStore(), RecordingStore()
    indices = np.array([1, 0])
    for step in range(3):
        batch = DualCollator(model, examples, scored, hard_negatives, 7, teacher_scores=True)(
            indices, step
        )
        DualCollator(model, examples, plain, hard_negatives, 7)(indices, step)
        rows = scored.asked[-1]
        assert rows == plain.asked[-1]  # the same draws as without scores
        want = [score_of[CORPUS_ROWS[r]["pid"]] for r in rows]
        assert batch["teacher"]["scores"].reshape(-1).tolist() == want
        assert batch["teacher"]["scores"].shape == (2, 1 + hard_negatives)
        groups = [rows[i : i + 1 + hard_negatives] for i in range(0, len(rows), 1 + hard_negatives)]
        for group, i in zip(groups, indices):
            assert CORPUS_ROWS[group[0]]["pid"] in SCORED[i]["positives"]
            assert {CORPUS_ROWS[r]["pid"] for r in group[1:]} <= set(SCORED[i]["negatives"])


def test_a_margin_mse_run_leaves_out_examples_without_negatives(corpus, tmp_path):
    """Nothing to distil without a negative: such examples are left out (logged), where
    another dual loss refuses them unless random_negatives is on."""
    from retrieval.errors import ConfigError
    from retrieval.training.config import validate_train_config
    from retrieval.training.loop import prepare_data

    tables = corpus.parent
    bare = {"qid": "q2", "query": "third", "positives": ["d8"], "negatives": [],
            "positive_scores": [1.0], "negative_scores": []}  # fmt: skip
    write_table(tmp_path / "examples", [*SCORED, bare], SCORED_EXAMPLES)
    raw = {"kind": "dual", "model": "m", "hard_negatives": 1, "loss": "margin_mse",
           "data": {"tables": str(tables), "examples": str(tmp_path / "examples")}}  # fmt: skip
    prepare_data(validate_train_config({**raw, "output_dir": str(tmp_path / "out")}))
    resolved = ResolvedExamples(tmp_path / "out" / "data" / "examples")
    assert resolved.queries == ["first", "second"]
    assert [s.tolist() for s in resolved.positive_scores] == [[9.0], [8.0, 7.5]]
    with pytest.raises(ConfigError, match="1 of 3 examples have no negatives"):
        prepare_data(
            validate_train_config({**raw, "loss": "infonce", "output_dir": str(tmp_path / "other")})
        )


LOOP_RUNS = {"dual": {"hard_negatives": 2}, "joint": {"group_size": 3}}


@needs_gloo
@pytest.mark.slow  # whole DeepSpeed runs; the module tests above check the loss itself
@pytest.mark.parametrize("kind", sorted(LOOP_RUNS))
def test_the_loop_trains_with_margin_mse(tmp_path, scifact_tables, tiny_bert_dir, kind):
    """train_worker end to end (DeepSpeed ZeRO 0, export) with loss margin_mse: a dual run on
    examples with stored teacher scores, a joint run with its live re-ranker."""
    import json

    import yaml

    from retrieval.tables import read_table
    from retrieval.training.examples import examples_from_qrels

    pids = read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist()
    rng = np.random.default_rng(0)
    rows = []
    for row in examples_from_qrels(scifact_tables, "train").slice(0, 32).to_pylist():
        negatives = [p for p in rng.choice(pids, 6, replace=False) if p not in row["positives"]]
        rows.append({**row, "negatives": negatives[:4],
                     "positive_scores": rng.normal(5, 1, len(row["positives"])).tolist(),
                     "negative_scores": rng.normal(0, 2, 4).tolist()})  # fmt: skip
    write_table(tmp_path / "examples", rows, SCORED_EXAMPLES)
    config = {
        "kind": kind, "loss": "margin_mse", "model": str(tiny_bert_dir),
        "output_dir": str(tmp_path / "out"),
        "data": {"tables": str(scifact_tables), "examples": str(tmp_path / "examples")},
        "batch_size": 8, "max_steps": 2, "log_every": 1,
        "model_settings": {"query_max_len": 24, "passage_max_len": 48}, **LOOP_RUNS[kind],
    }  # fmt: skip
    if kind == "joint":
        config.update(cross_model=str(tiny_bert_dir), cross_max_len=64)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    run_on_ranks(partial(_train, str(path)), 1, str(tmp_path))
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and 0 < summary["final_loss"] < 1e4
    start = dual_encoder(tiny_bert_dir, torch.float32).state_dict()
    trained = dual_encoder(tmp_path / "out" / "model", torch.float32).state_dict()
    assert max(float((trained[k] - start[k]).abs().max()) for k in start) > 1e-6
