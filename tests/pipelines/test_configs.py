"""Every shipped pipeline config validates (keys, values, training sections, stage graph)."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig, check_train_sections
from pipelines.runner import check_graph
from tests.helpers_config import load_raw

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_the_four_pipeline_configs_ship():
    assert {p.stem for p in CONFIGS} >= {"demo", "scifact", "msmarco", "nq"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_valid(path):
    config = PipelineConfig.model_validate(yaml.safe_load(path.read_text()))
    check_train_sections(config, path)
    check_graph(config)
    assert config.enabled_stages()[0] == "prepare" and config.enabled_stages()[-1] == "evaluate"


def test_a_stage_whose_input_is_disabled_is_refused(tmp_path):
    raw = yaml.safe_load(CONFIGS[0].read_text())
    raw["stages"]["train_cross"]["enabled"] = False
    with pytest.raises(
        ValueError, match="stage denoise needs stage train_cross, which is disabled"
    ):
        check_graph(PipelineConfig.model_validate(raw))


def _with(raw: dict, path: tuple, value) -> dict:
    """``raw`` with the key at ``path`` set to ``value`` (intermediate mappings created)."""
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return raw


TYPOS = {
    "model_settings key": (("model_settings", "poolling"), "cls", "key 'model_settings.poolling'"),
    "model_settings value": (("model_settings", "pooling"), "max", "pooling 'max' is not one of"),
    "loss_args key": (
        ("stages", "train_dual_0", "train", "loss_args"),
        {"temprature": 0.1},
        "stages.train_dual_0.train: key 'loss_args.temprature'",
    ),
    "loss_args type": (
        ("stages", "train_cross", "train", "loss_args"),
        {"detach_teacher": True},
        "key 'loss_args.detach_teacher'",  # listwise_ce takes no arguments
    ),
    "stage model_settings": (
        ("stages", "train_dual_1", "train", "model_settings"),
        {"query_max_length": 32},
        "stages.train_dual_1.train.model_settings.query_max_length",
    ),
    "train key": (("stages", "mine", "train"), {}, "stages.mine.train"),
    "a key of another kind": (
        ("stages", "train_dual_0", "train", "group_size"),
        8,
        "key 'stages.train_dual_0.train.group_size': kind dual does not take it (kinds cross, "
        "joint only)",
    ),
    "a dual key in the re-ranker's stage": (
        ("stages", "train_cross", "train", "model_settings"),
        {"pooling": "cls"},
        "key 'stages.train_cross.train.model_settings': kind cross does not take it",
    ),
    "a renamed key": (
        ("stages", "train_dual_1", "train", "moco_queue_size"),
        16,
        "key 'stages.train_dual_1.train.moco_queue_size': renamed; write queue: {size: 16}",
    ),
    "a loss of another kind": (
        ("stages", "train_cross", "train", "loss"),
        "infonce",
        "key 'stages.train_cross.train.loss': loss 'infonce' does not train a cross model; "
        "use one of listwise_ce, pointwise_bce",
    ),
}


@pytest.mark.parametrize("case", TYPOS)
def test_a_typo_anywhere_in_the_config_is_one_line_at_load_time(tmp_path, case):
    from pipelines.config import load_pipeline_config
    from retrieval.errors import ConfigError

    path, value, message = TYPOS[case]
    raw = _with(yaml.safe_load(CONFIGS[0].read_text()), path, value)
    raw["data"] = {"beir": str(tmp_path)}
    config_file = tmp_path / "typo.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(config_file)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_each_training_stage_holds_the_keys_of_its_kind_only():
    """What `rqa config show` prints and a stage's fingerprint is made of."""
    from pipelines.config import PipelineConfig

    stages = PipelineConfig.model_validate(yaml.safe_load(CONFIGS[0].read_text())).stages
    dual, cross = stages.train_dual_0.train, stages.train_cross.train
    joint, pretrain = stages.train_joint.train, stages.pretrain.train
    assert {"hard_negatives", "queue", "grad_cache"} <= set(dual.model_dump())
    assert not {"group_size", "cross_max_len", "head_lr", "projector"} & set(dual.model_dump())
    assert {"group_size", "cross_max_len", "head_lr"} <= set(cross.model_dump())
    assert not {"hard_negatives", "model_settings", "queue", "grad_cache"} & set(cross.model_dump())
    assert type(joint).model_validate({"grad_cache": {"pair_chunk": 4}}).grad_cache.pair_chunk == 4
    assert (dual.loss, cross.loss, joint.loss, pretrain.loss) == (
        "cross_batch", "listwise_ce", "joint_listwise", None)  # fmt: skip


def test_launcher_keys_live_on_the_pipelines_side(tmp_path):
    from pipelines.launch_settings import load_train_job
    from retrieval.errors import ConfigError
    from retrieval.training.config import KIND_CONFIGS, load_train_config

    for cls in KIND_CONFIGS.values():
        assert not {"launcher", "workers", "ray_address"} & set(cls.model_fields)
    path = tmp_path / "train.yaml"
    raw = {"model": "m", "output_dir": str(tmp_path), "data": {"tables": str(tmp_path)}}
    path.write_text(yaml.safe_dump({**raw, "launcher": "local"}))
    config, how = load_train_job(path, workers=1)
    assert how.launcher == "local" and how.workers == 1 and config.kind == "dual"
    with pytest.raises(ConfigError, match="key 'launcher'"):
        load_train_config(path)  # the library's config alone does not know launchers


def test_data_beir_override_replaces_the_configs_data_folder(tmp_path):
    from pipelines.config import load_pipeline_config
    from retrieval.errors import MissingInputError

    # nq: data.tables, not here (msmarco also names an augment queries file made beside it)
    nq = next(p for p in CONFIGS if p.stem == "nq")
    with pytest.raises(MissingInputError, match="data.tables"):
        load_pipeline_config(nq)
    config = load_pipeline_config(nq, data_beir=tmp_path)
    assert config.data.beir == tmp_path and config.data.tables is None
    assert config.data.eval_split == "test"  # the rest of the data section is kept


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_pass_the_load_time_checks(path):
    from pipelines.config import check_runnable

    check_runnable(PipelineConfig.model_validate(yaml.safe_load(path.read_text())), path)


def test_cluster_configs_train_on_mined_and_bm25_negatives_and_skip_bm25_eval():
    raw = {p.stem: yaml.safe_load(p.read_text()) for p in CONFIGS}
    marco, nq = (PipelineConfig.model_validate(raw[n]) for n in ("msmarco", "nq"))
    assert marco.stages.train_dual_0.bm25_negatives > 0  # not random negatives
    assert marco.stages.augment.queries_file is not None and nq.stages.augment.from_corpus > 0
    assert not marco.stages.evaluate.bm25 and not nq.stages.evaluate.bm25
    assert marco.stages.evaluate.k == 1000  # MRR@10, R@50 and R@1000


def test_augment_with_no_source_of_queries_is_one_line(tmp_path):
    from retrieval.errors import ConfigError

    raw = yaml.safe_load(CONFIGS[0].read_text())
    raw["stages"]["augment"] = {"from_corpus": 0}
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert "key 'stages.augment'" in message and "\n" not in message
    assert "stages.augment.queries_file" in message and "stages.augment.from_corpus" in message
    raw["stages"]["augment"]["enabled"] = False
    raw["stages"]["train_dual_2"]["enabled"] = False  # it reads augment's examples
    assert not load_raw(tmp_path, raw).enabled("augment")


@pytest.mark.parametrize("stage", ["train_cross", "train_joint"])
def test_a_group_larger_than_the_mined_negatives_is_one_line(tmp_path, stage):
    """train_cross reads mine's examples, train_joint denoise's lists of mined negatives: both
    hold at most stages.mine.negatives negatives, so group_size - 1 may not exceed it."""
    from retrieval.errors import ConfigError

    raw = yaml.safe_load(CONFIGS[0].read_text())
    raw["stages"]["mine"]["negatives"] = 6
    for reader in ("train_cross", "train_joint"):
        raw["stages"][reader]["train"]["group_size"] = 7  # 1 positive + 6 negatives: fits
    load_raw(tmp_path, raw)
    raw["stages"][stage]["train"]["group_size"] = 8
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert f"key 'stages.{stage}.train.group_size': 8 needs 7 negatives" in message
    assert "stages.mine.negatives keeps at most 6" in message and "\n" not in message


def test_scifact_pretrain_is_scifact_plus_the_pretrain_stage():
    """The two runs are compared to measure pre-training alone (docs/results.md, "Domain
    pre-training"), so every other setting must match: a lever kept in scifact.yaml must reach
    both."""
    by_name = {p.stem: yaml.safe_load(p.read_text()) for p in CONFIGS}
    plain, pretrain = by_name["scifact"], by_name["scifact_pretrain"]
    assert pretrain["stages"].pop("pretrain")["enabled"] is True
    assert {k: v for k, v in pretrain.items() if k != "name"} == {
        k: v for k, v in plain.items() if k != "name"
    }


def test_a_null_loss_args_clears_the_configs_for_another_loss(tmp_path):
    """configs/scifact.yaml's train_joint sets detach_teacher, an argument of the listwise KL:
    choosing margin_mse (no arguments) needs loss_args cleared, which `--set ...=null` does."""
    from pipelines.config import load_pipeline_config
    from pipelines.overrides import parse_set
    from retrieval.errors import ConfigError

    scifact = next(path for path in CONFIGS if path.name == "scifact.yaml")
    data = tmp_path  # a folder: the checks need it to exist, nothing is read
    margin = ["stages.train_joint.train.loss=margin_mse"]
    with pytest.raises(ConfigError, match="key 'loss_args.detach_teacher'"):
        load_pipeline_config(scifact, data_beir=data, changes=parse_set(margin))
    cleared = parse_set([*margin, "stages.train_joint.train.loss_args=null"])
    train = load_pipeline_config(scifact, data_beir=data, changes=cleared).stages.train_joint.train
    assert train.loss == "margin_mse" and not train.loss_args
    shipped = load_pipeline_config(scifact, data_beir=data).stages.train_joint.train
    assert shipped.loss_args == {"detach_teacher": True}
