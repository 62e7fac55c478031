"""Training as a user runs it: `rqa train-dual` in a subprocess, killed with SIGKILL mid-run
and started again, must end with exactly the weights of a run that was never interrupted."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from retrieval.models import DualEncoder
from tests.helpers_cli import finish, kill_after_first_checkpoint, rqa, spawn


def write_config(tmp_path: Path, name: str, tables: Path, model: Path, **extra) -> Path:
    config = {
        "model": str(model),
        "output_dir": str(tmp_path / name),
        "data": {"tables": str(tables), "split": "train", "max_examples": 256},
        "batch_size": 8,
        "hard_negatives": 1,
        "random_negatives": True,  # examples from qrels have no negatives of their own
        "epochs": 3,  # the SciFact excerpt gives 18 batches an epoch; max_steps ends it
        "max_steps": 30,
        "checkpoint_every": 5,
        "launcher": "local",
        "model_settings": {"passage_max_len": 64, "query_max_len": 32},
        **extra,
    }
    config = {k: v for k, v in config.items() if v is not None}  # None: a key left out
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return DualEncoder.from_pretrained(folder).state_dict()


@pytest.mark.slow
def test_kill9_and_resume_gives_the_uninterrupted_weights(tmp_path, scifact_tables, tiny_bert_dir):
    whole = write_config(tmp_path, "whole", scifact_tables, tiny_bert_dir)
    finish(rqa("train-dual", "--config", str(whole)))

    crashed = write_config(tmp_path, "crashed", scifact_tables, tiny_bert_dir)
    proc = rqa("train-dual", "--config", str(crashed))
    kill_after_first_checkpoint(proc, tmp_path / "crashed" / "checkpoints")
    assert not (tmp_path / "crashed" / "model").exists()
    finish(rqa("train-dual", "--config", str(crashed)))

    summary = json.loads((tmp_path / "crashed" / "train_summary.json").read_text())
    assert summary["steps"] == 30 and 5 <= summary["resumed_from"] < 30
    expected, got = weights(tmp_path / "whole" / "model"), weights(tmp_path / "crashed" / "model")
    start = weights(tiny_bert_dir)
    assert any(not torch.equal(start[k], expected[k]) for k in expected), "training changed nothing"
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_finished_run_is_not_trained_again(tmp_path, scifact_tables, tiny_bert_dir):
    config = write_config(tmp_path, "run", scifact_tables, tiny_bert_dir, max_steps=4)
    finish(rqa("train-dual", "--config", str(config)))
    before = (tmp_path / "run" / "model" / "model.safetensors").stat().st_mtime_ns
    finish(rqa("train-dual", "--config", str(config)))
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["resumed_from"] == 4
    assert (tmp_path / "run" / "model" / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "loss", ["listwise_ce", pytest.param("pointwise_bce", marks=pytest.mark.slow)]
)
def test_cross_encoder_learns_and_loads(tmp_path, scifact_tables, tiny_bert_dir, loss):
    """Its weights move and its loss falls (8 examples seen every step, random corpus passages
    as negatives: the tiny model can learn its 8 positives), and the saved model reloads."""
    from retrieval.models import CrossEncoder

    config = write_config(
        tmp_path, "ce", scifact_tables, tiny_bert_dir, max_steps=24, loss=loss, group_size=4,
        hard_negatives=None, model_settings=None,  # a dual encoder's keys
        lr=2e-3, head_lr=3e-2, log_every=1, warmup_ratio=0.0, epochs=24,
        data={"tables": str(scifact_tables), "split": "train", "max_examples": 8},
    )  # fmt: skip
    finish(rqa("train-cross", "--config", str(config)))
    model = CrossEncoder.from_pretrained(tmp_path / "ce" / "model")
    start = CrossEncoder.from_pretrained(tiny_bert_dir).model.bert.state_dict()
    trained = model.model.bert.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start), "weights did not change"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "ce" / "train_log.jsonl").open()]
    assert len(losses) == 24
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < first - 0.02, losses  # the first steps vary by < 0.01
    check_tensorboard_matches_the_log(tmp_path / "ce")
    card = (tmp_path / "ce" / "model" / "README.md").read_text()
    assert f"base_model: {tiny_bert_dir}" in card and f'| loss | `"{loss}"` |' in card


def check_tensorboard_matches_the_log(out: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert scalars == [(r["step"], pytest.approx(r["loss"])) for r in logged]


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "train_summary.json").read_text())


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory, tiny_bert_dir) -> Path:
    """tiny_bert_dir's weights without dropout: the forward pass is then the same function of
    a query or passage on every rank and in one process, so runs that split the same global
    batch differently can be held to the same weights."""
    from transformers import AutoTokenizer, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    model = BertModel.from_pretrained(
        tiny_bert_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ray_two_workers(tmp_path_factory, scifact_tables, no_dropout_bert) -> Path:
    """`rqa train-dual` on 2 Ray Train workers, 8 queries each, 3 steps: its output folder."""
    tmp = tmp_path_factory.mktemp("ray-two-workers")
    config = write_config(
        tmp, "ray", scifact_tables, no_dropout_bert, max_steps=3, launcher="ray", workers=2,
        log_every=1,
    )  # fmt: skip
    finish(rqa("train-dual", "--config", str(config)))
    return tmp / "ray"


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").open()]


@pytest.mark.slow
def test_two_ray_workers_share_cross_batch_negatives(
    ray_two_workers, tmp_path, scifact_tables, no_dropout_bert
):
    """2 workers x 8 queries, each query scored against both workers' 2 x 8 x (1 + 1) passages
    and each worker's gradient terms sent back to it, train as one process does on the whole
    batch of 16 against its 32 passages: the same final weights. To float rounding (measured
    2e-7; training moves them up to 4e-5): a worker that kept only its own passages, or only
    its own gradient terms (the loss and its count of candidates unchanged), ends 8e-5 away."""
    summary = read_summary(ray_two_workers)
    assert summary["world_size"] == 2 and summary["steps"] == 3
    log = read_log(ray_two_workers)
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {r["candidates_per_query"] for r in log} == {2 * 8 * (1 + 1)}

    config = write_config(
        tmp_path, "whole", scifact_tables, no_dropout_bert, max_steps=3, batch_size=16,
        log_every=1,
    )  # fmt: skip
    finish(rqa("train-dual", "--config", str(config)))
    assert read_summary(tmp_path / "whole")["world_size"] == 1
    assert {r["candidates_per_query"] for r in read_log(tmp_path / "whole")} == {16 * (1 + 1)}
    expected = weights(tmp_path / "whole" / "model")
    got = weights(ray_two_workers / "model")
    start = weights(no_dropout_bert)
    assert any(not torch.equal(start[k], expected[k]) for k in expected), "training changed nothing"
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=2e-6, msg=key)


@pytest.mark.slow
def test_same_loop_runs_under_torchrun(ray_two_workers, tmp_path, scifact_tables, no_dropout_bert):
    """torchrun's 2 processes train exactly as Ray Train's 2 workers with the same config and
    seed: the same loss at every step and bit-identical weights (both run the same loop, one
    thread a process, over gloo; a different batch, seed or reduction would show)."""
    config = write_config(
        tmp_path, "trun", scifact_tables, no_dropout_bert, max_steps=3, log_every=1
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "pipelines.train_launcher", str(config),
    ]  # fmt: skip
    finish(spawn(cmd))
    summary = read_summary(tmp_path / "trun")
    assert summary["world_size"] == 2 and summary["steps"] == 3
    curve = [(r["step"], r["loss"], r["candidates_per_query"]) for r in read_log(tmp_path / "trun")]
    ray_curve = [
        (r["step"], r["loss"], r["candidates_per_query"]) for r in read_log(ray_two_workers)
    ]
    assert curve == ray_curve
    expected, got = weights(ray_two_workers / "model"), weights(tmp_path / "trun" / "model")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


@pytest.mark.slow
def test_ray_run_killed_and_relaunched_gives_the_uninterrupted_weights(
    tmp_path, scifact_tables, tiny_bert_dir
):
    extra = {"launcher": "ray", "workers": 2, "max_steps": 20}
    whole = write_config(tmp_path, "whole", scifact_tables, tiny_bert_dir, **extra)
    finish(rqa("train-dual", "--config", str(whole)))
    crashed = write_config(tmp_path, "crashed", scifact_tables, tiny_bert_dir, **extra)
    proc = rqa("train-dual", "--config", str(crashed))
    kill_after_first_checkpoint(proc, tmp_path / "crashed" / "checkpoints")
    finish(rqa("train-dual", "--config", str(crashed)))
    assert read_summary(tmp_path / "crashed")["resumed_from"] >= 5
    expected, got = weights(tmp_path / "whole" / "model"), weights(tmp_path / "crashed" / "model")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow  # ~8 s; the default tier's pipeline run trains train_joint too
def test_joint_training_updates_and_exports_both_models(tmp_path, scifact_tables, tiny_bert_dir):
    """Both saved folders differ from the weights they started from: the dual encoder's, and
    the re-ranker's encoder (its 1-logit head is new, so the encoder is what can be compared).
    Weight decay is off, so a weight moves only if a gradient reached it (AdamW moves nothing
    on a zero gradient)."""
    from retrieval.models import CrossEncoder

    config = write_config(
        tmp_path, "joint", scifact_tables, tiny_bert_dir, max_steps=3, group_size=4,
        cross_model=str(tiny_bert_dir), hard_negatives=None, weight_decay=0.0,
    )  # fmt: skip
    finish(rqa("train-joint", "--config", str(config)))
    dual = weights(tmp_path / "joint" / "model")
    start = weights(tiny_bert_dir)
    assert dual.keys() == start.keys()
    assert any(not torch.equal(dual[k], start[k]) for k in dual), "the dual encoder did not move"
    cross = CrossEncoder.from_pretrained(tmp_path / "joint" / "cross_model")
    assert cross.model.config.num_labels == 1
    trained = cross.model.bert.state_dict()
    begun = CrossEncoder.from_pretrained(tiny_bert_dir).model.bert.state_dict()
    assert trained.keys() == begun.keys()
    assert any(not torch.equal(trained[k], begun[k]) for k in trained), "the re-ranker did not move"
