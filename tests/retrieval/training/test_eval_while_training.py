"""Evaluation while training (retrieval/training/evaluation/): it leaves the training alone (the
same final weights with it on and off), ``select: best`` exports the weights of the best
evaluated step (those of that step's checkpoint), the logged dev metrics are pytrec_eval's on
the exported model, the best-so-far record survives a restart, and bad keys are one line."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from retrieval.errors import ConfigError
from retrieval.training.config import load_train_config
from tests.helpers_dist import run_on_ranks
from tests.retrieval.training.test_grad_cache import join_deepspeed, needs_gloo

STEPS, EVERY = 6, 2


def write_config(tmp_path: Path, name: str, tables: Path, model: Path, **extra) -> Path:
    config = {
        "model": str(model), "output_dir": str(tmp_path / name),
        "data": {"tables": str(tables), "max_examples": 64},
        "batch_size": 8, "max_steps": STEPS, "checkpoint_every": EVERY, "keep_checkpoints": 10,
        "log_every": 1, "lr": 1e-3, "random_negatives": True, "hard_negatives": 1,
        "model_settings": {"query_max_len": 24, "passage_max_len": 48},
        **extra,
    }  # fmt: skip
    config = {k: v for k, v in config.items() if v is not None}  # None: a key left out
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _train_all(paths: list[str], rank: int, out: str) -> None:
    from retrieval.training.loop import train_worker

    torch.set_num_threads(1)
    join_deepspeed(rank, 1)
    for path in paths:
        train_worker(load_train_config(path))


def dual_weights(folder: Path) -> dict[str, torch.Tensor]:
    from retrieval.models import DualEncoder

    return DualEncoder.from_pretrained(folder).state_dict()


def checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    """The dual encoder's weights in DeepSpeed's checkpoint of ``step`` (keys ``model.*``)."""
    (states,) = (run / "checkpoints" / f"step-{step}").rglob("mp_rank_00_model_states.pt")
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]
    return {k.removeprefix("model."): v for k, v in module.items() if k.startswith("model.")}


def pytrec_metrics(model_dir: Path, tables: Path) -> dict[str, float]:
    """The model's nDCG@10, MRR@10 and Recall@100 over every judged dev query against the whole
    corpus (the run's pool when max_queries and pool_size exceed the excerpt), by pytrec_eval."""
    import pytrec_eval

    from retrieval.encoding import encode_passages, encode_queries
    from retrieval.models import DualEncoder
    from retrieval.tables.store import read_table

    model = DualEncoder.from_pretrained(model_dir)
    qrels_table = read_table(tables / "qrels-dev").to_pylist()
    qrels: dict[str, dict[str, int]] = {}
    for row in qrels_table:
        qrels.setdefault(row["qid"], {})[row["pid"]] = row["relevance"]
    queries = {r["qid"]: r["text"] for r in read_table(tables / "queries-dev").to_pylist()}
    qids = sorted(q for q in qrels if any(v > 0 for v in qrels[q].values()))
    corpus = read_table(tables / "corpus").to_pylist()
    q = encode_queries(model, [queries[x] for x in qids], show_progress=False)
    p = encode_passages(model, [r["title"] for r in corpus], [r["text"] for r in corpus],
                        show_progress=False)  # fmt: skip
    q /= np.linalg.norm(q, axis=1, keepdims=True)  # the tiny model's similarity is cosine
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    scores = q @ p.T
    run = {
        qid: {r["pid"]: float(s) for r, s in zip(corpus, scores[i])} for i, qid in enumerate(qids)
    }
    top10 = {qid: dict(sorted(docs.items(), key=lambda x: -x[1])[:10]) for qid, docs in run.items()}
    judged = {qid: qrels[qid] for qid in qids}
    full = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut_10", "recall_100"}).evaluate(run)
    rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10)
    return {
        "ndcg@10": np.mean([full[x]["ndcg_cut_10"] for x in qids]),
        "recall@100": np.mean([full[x]["recall_100"] for x in qids]),
        "mrr@10": np.mean([rr[x]["recip_rank"] for x in qids]),
    }


@pytest.mark.slow  # three short trainings, ~12 s
@needs_gloo
def test_evaluation_leaves_training_alone_and_select_best_exports_the_best_step(
    tmp_path, scifact_tables, tiny_bert_dir
):
    evaluation = {"every_steps": EVERY, "max_queries": 1000, "pool_size": 1000}
    paths = [
        write_config(tmp_path, "off", scifact_tables, tiny_bert_dir),
        write_config(tmp_path, "last", scifact_tables, tiny_bert_dir, evaluation=evaluation),
        write_config(
            tmp_path,
            "best",
            scifact_tables,
            tiny_bert_dir,
            evaluation={**evaluation, "select": "best"},
        ),  # fmt: skip
    ]
    run_on_ranks(partial(_train_all, [str(p) for p in paths]), 1, str(tmp_path))

    off, last, best = (dual_weights(tmp_path / name / "model") for name in ("off", "last", "best"))
    start = dual_weights(tiny_bert_dir)
    assert any(not torch.equal(start[k], off[k]) for k in off), "training changed nothing"
    for key in off:  # evaluation on: the same weights, bit for bit
        assert torch.equal(last[key], off[key]), key
        assert torch.equal(checkpoint_weights(tmp_path / "best", STEPS)[key], off[key]), key

    log = [json.loads(line) for line in (tmp_path / "best" / "train_log.jsonl").open()]
    evals = {r["step"]: r for r in log if "eval/ndcg@10" in r}
    assert sorted(evals) == [2, 4, 6]
    assert [r["loss"] for r in log if "loss" in r] == [
        r["loss"] for r in (json.loads(x) for x in (tmp_path / "off" / "train_log.jsonl").open())
    ]
    values = {step: r["eval/ndcg@10"] for step, r in evals.items()}
    best_step = max(sorted(values), key=lambda s: values[s])  # the earliest of a tie
    assert best_step < STEPS  # this seeded run peaks early: best and last weights differ
    summary = json.loads((tmp_path / "best" / "train_summary.json").read_text())
    assert summary["evaluation"] == {
        "metric": "ndcg@10", "select": "best", "best_step": best_step,
        "best_value": values[best_step],
    }  # fmt: skip
    record = json.loads((tmp_path / "best" / "eval_best.json").read_text())
    assert record == {"metric": "ndcg@10", "step": best_step, "value": values[best_step]}
    saved = checkpoint_weights(tmp_path / "best", best_step)
    for key in best:
        assert torch.equal(best[key], saved[key]), key
    card = (tmp_path / "best" / "model" / "README.md").read_text()
    assert f"at step {best_step}" in card and "the best dev step" in card

    expected = pytrec_metrics(tmp_path / "best" / "model", scifact_tables)
    for name, value in expected.items():
        assert evals[best_step][f"eval/{name}"] == pytest.approx(value, abs=1e-6), name
    expected_last = pytrec_metrics(tmp_path / "last" / "model", scifact_tables)
    assert evals[STEPS]["eval/ndcg@10"] == pytest.approx(expected_last["ndcg@10"], abs=1e-6)


class ScriptedEvaluator:
    """Gives the values it was handed, one per evaluation."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, model) -> dict[str, float]:
        return {"ndcg@10": self.values.pop(0)}


class RecordingLog:
    def __init__(self):
        self.records = []

    def write(self, record: dict) -> None:
        self.records.append(record)


def scripted(tmp_path: Path, values, exported: list) -> object:
    """An EvalDuringTraining (select best) of a stand-in model whose evaluator says ``values``."""
    from types import SimpleNamespace

    from retrieval.training.evaluation import during_training

    def export_to(folder: Path) -> None:
        exported.append(folder.name)
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "weights.txt").write_text(folder.name)

    config = SimpleNamespace(
        kind="dual", output_dir=str(tmp_path),
        evaluation=SimpleNamespace(every_steps=EVERY, select="best", metric=None),
    )  # fmt: skip
    original = during_training.build_evaluator
    during_training.build_evaluator = lambda config, metric: ScriptedEvaluator(values)
    try:
        return during_training.EvalDuringTraining(config, torch.nn.Linear(1, 1), None, 0, export_to)
    finally:
        during_training.build_evaluator = original


def test_the_best_record_survives_a_restart(tmp_path):
    exported: list[str] = []
    first = scripted(tmp_path, [0.3, 0.5], exported)
    for step in (2, 4):
        first.after_step(step, 10, RecordingLog())
    assert exported == [".best-step-2.tmp", ".best-step-4.tmp"]
    # killed here; the restarted run evaluates worse steps: the best stays step 4
    restarted = scripted(tmp_path, [0.4, 0.5, 0.45], exported)
    for step in (6, 8, 10):
        restarted.after_step(step, 10, RecordingLog())
    assert exported == [".best-step-2.tmp", ".best-step-4.tmp"]  # a tie keeps the earlier step
    assert restarted.summary()["best_step"] == 4
    assert json.loads((tmp_path / "eval_best.json").read_text())["step"] == 4
    assert (tmp_path / "best" / "model" / "weights.txt").read_text() == ".best-step-4.tmp"
    assert json.loads((tmp_path / "best" / "step.json").read_text())["value"] == 0.5


def test_evaluation_restores_modes_and_random_streams():
    import random

    from retrieval.training.evaluation.isolation import evaluating

    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Dropout(0.5))
    module[1].eval()  # a submodule kept in eval mode by the training stays so
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    with evaluating(module):
        assert not module.training and not torch.is_grad_enabled()
        torch.rand(5), np.random.rand(5), random.random()
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert module.training and module[0].training and not module[1].training


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"kind": "retromae", "loss": "masked_lm", "hard_negatives": None,
          "random_negatives": None, "evaluation": {"every_steps": 5}},
         "key 'evaluation': kind retromae has no dev metric"),
        ({"evaluation": {"every_steps": 5, "metric": "ndcg"}}, "key 'evaluation.metric'"),
        ({"evaluation": {"every_steps": 5, "select": "first"}}, "key 'evaluation.select'"),
        ({"evaluation": {"every_steps": 0}}, "key 'evaluation.every_steps'"),
        ({"evaluation": {"every_steps": 5, "max_querys": 9}}, "key 'evaluation.max_querys'"),
    ],
)  # fmt: skip
def test_bad_evaluation_keys_are_one_line(tmp_path, scifact_tables, tiny_bert_dir, extra, message):
    path = write_config(tmp_path, "run", scifact_tables, tiny_bert_dir, **extra)
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pair_evaluation_needs_pairs(tmp_path, tiny_bert_dir):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a sentence\nanother one\n")
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "pair", "loss": "simcse_unsup", "model": str(tiny_bert_dir),
        "output_dir": str(tmp_path / "out"), "data": {"sentences": str(sentences)},
        "evaluation": {"every_steps": 5},
    }))  # fmt: skip
    with pytest.raises(ConfigError, match="key 'evaluation.dev': give the sentence pairs"):
        load_train_config(path)


@pytest.mark.slow  # ~8 s
@needs_gloo
def test_joint_select_best_exports_both_models_of_the_best_step(
    tmp_path, scifact_tables, tiny_bert_dir
):
    from retrieval.models import CrossEncoder

    path = write_config(
        tmp_path, "joint", scifact_tables, tiny_bert_dir, kind="joint", hard_negatives=None,
        cross_model=str(tiny_bert_dir), group_size=2, cross_max_len=64, max_steps=4,
        evaluation={"every_steps": EVERY, "max_queries": 10, "pool_size": 50, "select": "best",
                    "metric": "mrr@10"},
    )  # fmt: skip
    run_on_ranks(partial(_train_all, [str(path)]), 1, str(tmp_path))
    out = tmp_path / "joint"
    summary = json.loads((out / "train_summary.json").read_text())
    best_step = summary["evaluation"]["best_step"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    assert [r["step"] for r in log if "eval/mrr@10" in r] == [2, 4]
    assert all({"loss/kl", "loss/reranker_ce", "loss/retriever_ce"} <= set(r) for r in log
               if "loss" in r)  # fmt: skip
    (states,) = (out / "checkpoints" / f"step-{best_step}").rglob("mp_rank_00_model_states.pt")
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]
    dual = dual_weights(out / "model")
    cross = CrossEncoder.from_pretrained(out / "cross_model").state_dict()
    for key, value in dual.items():
        assert torch.equal(value, module[f"dual.{key}"]), key
    for key, value in cross.items():
        assert torch.equal(value, module[f"cross.{key}"]), key
    assert "mrr@10" in (out / "cross_model" / "README.md").read_text()


@needs_gloo
def test_pair_run_logs_the_dev_spearman_of_its_model(tmp_path, tiny_bert_dir):
    from scipy.stats import spearmanr

    from retrieval.encoding import encode_queries
    from retrieval.evaluation import read_sentence_pairs

    stsb = Path(__file__).resolve().parents[2] / "data" / "stsb"
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "pair", "loss": "cosent", "model": str(tiny_bert_dir),
        "output_dir": str(tmp_path / "pair"), "data": {"pairs": str(stsb), "max_examples": 64},
        "batch_size": 8, "max_steps": 4, "log_every": 2, "lr": 1e-3,
        "evaluation": {"every_steps": 2, "max_queries": 1000},
    }))  # fmt: skip
    run_on_ranks(partial(_train_all, [str(path)]), 1, str(tmp_path))
    log = [json.loads(line) for line in (tmp_path / "pair" / "train_log.jsonl").open()]
    evals = {r["step"]: r["eval/spearman"] for r in log if "eval/spearman" in r}
    assert sorted(evals) == [2, 4]
    from retrieval.models import DualEncoder

    model = DualEncoder.from_pretrained(tmp_path / "pair" / "model")
    pairs = read_sentence_pairs(stsb / "dev.tsv")
    a = encode_queries(model, pairs.sentences1, show_progress=False)
    b = encode_queries(model, pairs.sentences2, show_progress=False)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert evals[4] == pytest.approx(spearmanr(pairs.labels, cosine).statistic, abs=1e-4)
