"""The pretrain stage: off in the presets; when on, the base of every dual stage that starts from
the base model (its fingerprint follows pretrain's output); a bad section is one line at load
time; and a real `rqa run` of prepare -> pretrain -> train_dual_0 with method retromae, then
simcse, where train_dual_0 loads the model pretrain wrote."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import yaml

from pipelines import runner
from pipelines.config import PipelineConfig, load_pipeline_config
from pipelines.runner import check_graph, plan_run, run_pipeline
from pipelines.stages import pretrain, stage_spec
from pipelines.stages.context import StageContext
from pipelines.stages.spec import External, Output
from retrieval.errors import ConfigError
from tests.helpers_cli import finish, rqa

LATER_STAGES = ("mine", "train_cross", "denoise", "train_dual_1", "augment", "train_dual_2",
                "evaluate")  # fmt: skip


def config_with(tmp_path: Path, **stages) -> PipelineConfig:
    data, model = tmp_path / "beir", tmp_path / "base-model"
    for folder in (data, model):
        folder.mkdir(exist_ok=True)
        (folder / "file.txt").write_text("v1")
    return PipelineConfig.model_validate(
        {"name": "pre", "run_dir": str(tmp_path / "run"), "model": str(model),
         "data": {"beir": str(data)}, "stages": {"augment": {"from_corpus": 5}, **stages}}
    )  # fmt: skip


def test_the_presets_leave_pretrain_off_and_dual_stages_start_from_the_base(tmp_path):
    for preset in ("rocketqa", "rocketqav2"):
        config = config_with(tmp_path)
        config.preset = preset
        assert "pretrain" not in config.enabled_stages()
        assert stage_spec(config, "train_dual_0").reads["model"] == External(config.model)


def test_enabled_pretrain_is_the_base_of_every_dual_stage_that_starts_from_the_base(tmp_path):
    config = config_with(tmp_path, pretrain={"enabled": True},
                         train_dual_2={"init": "previous"})  # fmt: skip
    assert config.enabled_stages()[:3] == ["prepare", "pretrain", "train_dual_0"]
    check_graph(config)
    stages = ("pretrain", "train_dual_0", "train_cross", "train_dual_1", "train_dual_2")
    reads = {stage: stage_spec(config, stage).reads["model"] for stage in stages}
    assert reads == {
        "pretrain": External(config.model),
        "train_dual_0": Output("pretrain", "model"),
        "train_cross": External(config.model),  # the re-ranker keeps the configured base
        "train_dual_1": Output("pretrain", "model"),  # init: base
        "train_dual_2": Output("train_dual_1", "model"),  # init: previous
    }


BAD_SECTIONS = {
    "unknown method": ({"method": "bert"}, "key 'stages.pretrain.method'"),
    "masking for simcse": (
        {"method": "simcse", "decoder_mask_ratio": 0.6},
        "decoder_mask_ratio: only method retromae masks passages",
    ),
    "a foreign loss": ({"train": {"loss": "cosent"}}, "train.loss: method retromae trains with"),
    "a ratio of 1": ({"encoder_mask_ratio": 1.0}, "key 'stages.pretrain.encoder_mask_ratio'"),
    "ratios inside train": ({"train": {"retromae": {}}}, "key 'stages.pretrain.train.retromae'"),
    "loss arguments": (
        {"train": {"loss_args": {"temperature": 0.1}}},
        "stages.pretrain.train: key 'loss_args.temperature'",
    ),
    "a key of the other method": (
        {"train": {"queue": {}}},
        "stages.pretrain.train: key 'queue': kind retromae does not take it (kinds dual, pair "
        "only)",
    ),
    "a key of neither method": (
        {"method": "simcse", "train": {"group_size": 4}},
        "key 'stages.pretrain.train.group_size': kind retromae or pair does not take it",
    ),
}


@pytest.mark.parametrize("case", BAD_SECTIONS)
def test_a_bad_pretrain_section_is_one_line_at_load_time(tmp_path, case):
    section, message = BAD_SECTIONS[case]
    raw = {"name": "bad", "model": "m", "data": {"beir": str(tmp_path)},
           "stages": {"pretrain": {"enabled": True, **section}}}  # fmt: skip
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(path)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("method", ["retromae", "simcse"])
def test_the_stage_configures_its_method_on_the_run_corpus(tmp_path, method):
    """The TrainConfig the stage hands the launcher: the method's kind, loss and mask ratios,
    the run's corpus tables and base model, the run's and the section's settings (nothing is
    trained here; test_rqa_run_pretrains_then_fine_tunes_the_pretrained_model trains both)."""
    section = {"enabled": True, "method": method, "train": {"lr": 1e-4, "workers": 2}}
    if method == "retromae":
        section["decoder_mask_ratio"] = 0.6
    config = config_with(tmp_path, pretrain=section)
    config.model_settings.passage_max_len = 128
    ctx = StageContext("pretrain", config, tmp_path / "out", tmp_path / "work",
                       {"tables": tmp_path / "tables", "model": config.model})  # fmt: skip
    train, how = pretrain.train_config(ctx)
    assert (train.model, train.data.tables) == (config.model, tmp_path / "tables")
    assert train.model_settings.passage_max_len == 128 and train.lr == 1e-4 and how.workers == 2
    if method == "retromae":
        assert (train.kind, train.loss) == ("retromae", "masked_lm")
        assert (train.retromae.encoder_mask_ratio, train.retromae.decoder_mask_ratio) == (0.3, 0.6)
    else:  # unsupervised SimCSE through pair training, the corpus passages as its sentences
        assert (train.kind, train.loss) == ("pair", "simcse_unsup")
        assert not hasattr(train, "retromae")  # a pair config has no mask ratios


def fake_run(ctx) -> dict:
    ctx.out.mkdir(parents=True)
    for name in stage_spec(ctx.config, ctx.name).writes:
        (ctx.out / name).mkdir()
    return {}


def test_a_changed_pretrain_stales_train_dual_0_through_its_model(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "stage_module", lambda stage: types.SimpleNamespace(run=fake_run))
    config = config_with(tmp_path, pretrain={"enabled": True})
    run_pipeline(config)
    changed = config.model_copy(deep=True)
    changed.stages.pretrain.decoder_mask_ratio = 0.7
    plans = {p.stage: p for p in plan_run(changed)}
    assert plans["prepare"].status == "cached"
    assert plans["pretrain"].reasons == ["config stages.pretrain.decoder_mask_ratio changed"]
    assert plans["train_dual_0"].reasons == ["input model (pretrain/model) is rerun first"]


PRETRAIN_STEPS = 4


def tiny_config(tmp_path: Path, model: Path, scifact: Path, method: str) -> Path:
    train = {"max_steps": PRETRAIN_STEPS, "batch_size": 4, "launcher": "local",
             "checkpoint_every": 2, "log_every": 1}  # fmt: skip
    config = {
        "name": "pretrained",
        "run_dir": str(tmp_path / "run"),
        "model": str(model),
        "model_settings": {"query_max_len": 24, "passage_max_len": 48},
        "data": {"beir": str(scifact), "max_corpus": 150},
        "stages": {
            # no weight decay: a pretrained weight differs from the base only by its gradients
            "pretrain": {
                "enabled": True,
                "method": method,
                "train": {**train, "weight_decay": 0.0},
            },
            "train_dual_0": {"train": train},
            **{stage: {"enabled": False} for stage in LATER_STAGES},
        },
    }
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "_manifest.json").read_text())


def plan_lines(config: Path) -> dict[str, str]:
    out = finish(rqa("run", str(config), "--dry-run"))
    return {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}


@pytest.mark.slow
def test_rqa_run_pretrains_then_fine_tunes_the_pretrained_model(
    tmp_path, tiny_bert_dir, scifact_dir
):
    config = tiny_config(tmp_path, tiny_bert_dir, scifact_dir, "retromae")
    run_dir = (tmp_path / "run").resolve()
    plans = plan_lines(config)
    assert list(plans) == ["prepare", "pretrain", "train_dual_0"]
    assert plans["pretrain"].split()[1:3] == ["missing", "run"]
    finish(rqa("run", str(config)))
    check_pretrain_trained(run_dir, tiny_bert_dir)
    check_fine_tuned_from_pretrain(run_dir, '"retromae (masked auto-encoding pre-training)"')
    assert (run_dir / "loss-pretrain.png").is_file()

    raw = yaml.safe_load(config.read_text())  # the same run with the other method
    raw["stages"]["pretrain"]["method"] = "simcse"
    config.write_text(yaml.safe_dump(raw))
    plans = plan_lines(config)
    assert plans["prepare"].split()[1:3] == ["cached", "skip"]
    assert "config stages.pretrain.method changed" in plans["pretrain"]
    assert "input model (pretrain/model) is rerun first" in plans["train_dual_0"]
    finish(rqa("run", str(config)))
    check_pretrain_trained(run_dir, tiny_bert_dir)
    check_fine_tuned_from_pretrain(run_dir, '"simcse_unsup"')


def check_pretrain_trained(run_dir: Path, base: Path) -> None:
    """pretrain's train log holds every step, each with a finite loss, and the encoder it
    exported differs from the base model's (weight decay is off: gradients moved it)."""
    import math

    import torch

    from retrieval.models import DualEncoder

    log = [json.loads(line) for line in (run_dir / "pretrain" / "train_log.jsonl").open()]
    assert [r["step"] for r in log] == list(range(1, PRETRAIN_STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in log), log
    summary = json.loads((run_dir / "pretrain" / "train_summary.json").read_text())
    assert summary["steps"] == PRETRAIN_STEPS
    trained = DualEncoder.from_pretrained(run_dir / "pretrain" / "model").state_dict()
    start = DualEncoder.from_pretrained(base).state_dict()
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in start), "pretrain moved no weight"


def check_fine_tuned_from_pretrain(run_dir: Path, pretrain_loss: str) -> None:
    """train_dual_0's fingerprint names pretrain's output, and its model card the folder it
    loaded: pretrain's model, itself a trained plain encoder."""
    from retrieval.models import DualEncoder

    made = manifest(run_dir, "pretrain")
    inputs = manifest(run_dir, "train_dual_0")["basis"]["inputs"]
    assert inputs["model"] == f"{made['fingerprint']}:{made['run_id']}"
    card = (run_dir / "train_dual_0" / "model" / "README.md").read_text()
    assert f"base_model: {run_dir / 'pretrain' / 'model'}\n" in card
    assert pretrain_loss in (run_dir / "pretrain" / "model" / "README.md").read_text()
    DualEncoder.from_pretrained(run_dir / "pretrain" / "model")
