from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from retrieval.losses import LOSSES
from retrieval.training.config import (
    KIND_CONFIGS,
    LOSSES_BY_KIND,
    CrossConfig,
    DualConfig,
    GradCacheConfig,
    JointGradCacheConfig,
    TrainConfig,
    load_train_config,
    registered_loss,
    validate_train_config,
)

REPO = Path(__file__).resolve().parents[3]


def _write(tmp_path, text):
    (tmp_path / "tables").mkdir(exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = "model: m\noutput_dir: out\ndata: {tables: TABLES}\n"


def test_valid_config_gets_defaults_and_absolute_paths(tmp_path):
    path = _write(tmp_path, BASE.replace("TABLES", str(tmp_path / "tables")))
    config = load_train_config(path)
    assert config.kind == "dual" and config.loss == "cross_batch" and config.batch_size == 32
    assert load_train_config(path, kind="cross").loss == "listwise_ce"
    assert config.output_dir.is_absolute() and config.deepspeed is None


@pytest.mark.parametrize(
    "extra,message",
    [
        ("batch_sise: 4\n", "key 'batch_sise': Extra inputs are not permitted"),
        ("batch_size: many\n", "key 'batch_size': Input should be a valid integer"),
        ("data: {tables: T, splitt: x}\n", "key 'data.splitt'"),
        ("lr: -1\n", "key 'lr': Input should be greater than 0"),
        ("kind: cross\nloss: cross_batch\n", "loss 'cross_batch' does not train a cross model"),
    ],
)
def test_bad_keys_are_one_line_errors_naming_the_key(tmp_path, extra, message):
    text = BASE.replace("TABLES", str(tmp_path / "tables"))
    if extra.startswith("data:"):
        text = text.replace(f"data: {{tables: {tmp_path / 'tables'}}}\n", "")
        extra = extra.replace("T", str(tmp_path / "tables"), 1)
    path = _write(tmp_path, text + extra)
    with pytest.raises(ValueError) as err:
        load_train_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)


def test_missing_path_is_named(tmp_path):
    path = _write(tmp_path, BASE.replace("TABLES", str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="key 'data.tables'"):
        load_train_config(path)


@pytest.mark.parametrize(
    ("kind", "keep_last", "expected"),
    [
        ("dual", False, "query chunk 8, passage chunk 16"),
        ("joint", False, "query chunk 8, passage chunk 16, pair chunk 4"),
        ("dual", True, "query chunk 8, passage chunk 16, last chunk encoded once (keep_last)"),
        ("dual", 3, "query chunk 8, passage chunk 16, last 3 chunks encoded once (keep_last)"),
    ],
)
def test_grad_cache_summary_names_every_setting_in_effect(kind, keep_last, expected):
    chunks = {"query_chunk": 8, "passage_chunk": 16, "keep_last": keep_last}
    config = JointGradCacheConfig(**chunks, pair_chunk=4) if kind == "joint" else (
        GradCacheConfig(**chunks)
    )  # fmt: skip
    assert config.summary() == expected


# -- one class per kind ------------------------------------------------------------------------

RAW = {"model": "m", "output_dir": "out", "data": {"tables": "t"}}


def test_each_kind_validates_as_its_own_class_and_the_union_agrees():
    union = TypeAdapter(TrainConfig)
    for kind, cls in KIND_CONFIGS.items():
        raw = {**RAW, "kind": kind}
        if kind == "joint":
            raw["cross_model"] = "c"
        if kind == "pair":  # its default loss reads labelled pairs, not a corpus
            raw["data"] = {"pairs": "p"}
        config = validate_train_config(raw)
        assert type(config) is cls and type(union.validate_python(raw)) is cls
        assert config.loss == LOSSES_BY_KIND[kind][0]  # the kind's default loss
    assert type(validate_train_config(RAW)) is DualConfig  # no kind: dual


def test_every_kinds_losses_are_registered_losses():
    for kind, losses in LOSSES_BY_KIND.items():
        assert losses and all(registered_loss(loss) in LOSSES for loss in losses), kind


def test_a_set_keys_dump_names_its_kind_and_validates_again():
    """Ray workers get the keys that were set (train_launcher.py): the kind must be among them
    even when it was the default of the class the config was made with."""
    config = CrossConfig(**RAW)
    again = validate_train_config(config.model_dump(mode="json", exclude_unset=True))
    assert type(again) is CrossConfig


def _load(tmp_path, raw: dict):
    (tmp_path / "t").mkdir(exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**RAW, "data": {"tables": str(tmp_path / "t")}, **raw}))
    with pytest.raises(ValueError) as err:
        load_train_config(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: key '"), message
    return message


KEYS_OF_ANOTHER_KIND = [  # (config changes, the key, the kinds that take it)
    ({"group_size": 8}, "group_size", "kinds cross, joint"),
    ({"kind": "cross", "hard_negatives": 1}, "hard_negatives", "kind dual"),
    (
        {"kind": "cross", "model_settings": {}},
        "model_settings",
        "kinds dual, joint, pair, retromae",
    ),
    ({"cross_model": "c"}, "cross_model", "kind joint"),
    ({"projector": {}}, "projector", "kind pair"),
    ({"kind": "cross", "queue": {}}, "queue", "kinds dual, pair"),
    ({"head_lr": 1e-3}, "head_lr", "kinds cross, joint, retromae"),
    ({"cross_lr": 1e-3}, "cross_lr", "kind joint"),
    ({"kind": "cross", "grad_cache": {}}, "grad_cache", "kinds dual, joint"),
    ({"grad_cache": {"pair_chunk": 4}}, "grad_cache.pair_chunk", "kind joint"),
    ({"data": {"pairs": "p"}}, "data.pairs", "kind pair"),
    ({"kind": "retromae", "data": {"examples": "e"}}, "data.examples", "kinds dual, cross, joint"),
]


@pytest.mark.parametrize(("raw", "key", "takers"), KEYS_OF_ANOTHER_KIND, ids=lambda v: str(v))
def test_a_key_of_another_kind_is_one_line_naming_it_and_its_kinds(tmp_path, raw, key, takers):
    if "data" in raw:
        raw = {**raw, "data": {"tables": str(tmp_path / "t"), **raw["data"]}}
    kind = raw.get("kind", "dual")
    expected = f"key '{key}': kind {kind} does not take it ({takers} only)"
    assert expected in _load(tmp_path, raw)


OLD_QUEUE_KEYS = {
    "dual queue size": ({"moco_queue_size": 8}, "key 'moco_queue_size': renamed; write queue: "
                        "{size: 8}"),
    "dual no queue": ({"moco_queue_size": 0}, "key 'moco_queue_size': renamed to queue, and 0 "
                      "meant no queue; leave it out"),
    "pair queue": ({"kind": "pair", "queue": True}, "key 'queue': now a mapping; write queue: {}"),
    "pair queue size": ({"kind": "pair", "queue": True, "queue_batches": 1.5},
                        "key 'queue_batches': renamed; write queue: {batches: 1.5}"),
    "pair no queue": ({"kind": "pair", "queue": False}, "key 'queue': now a mapping, and false "
                      "meant no queue; leave it out"),
}  # fmt: skip


@pytest.mark.parametrize("case", OLD_QUEUE_KEYS)
def test_the_old_queue_keys_are_one_line_saying_the_new_spelling(tmp_path, case):
    raw, expected = OLD_QUEUE_KEYS[case]
    assert expected in _load(tmp_path, raw)


def test_one_queue_spelling_sizes_both_kinds_by_rows_or_by_global_batches(tmp_path):
    (tmp_path / "t").mkdir()
    dual = {**RAW, "data": {"tables": str(tmp_path / "t")}, "batch_size": 4, "hard_negatives": 1}
    assert validate_train_config({**dual, "queue": {"size": 100}}).queue_rows(world=2) == 100
    # a global batch of a dual run pushes workers x batch x (1 + hard negatives) passages
    assert validate_train_config({**dual, "queue": {"batches": 2}}).queue_rows(world=2) == 32
    pair = {**dual, "kind": "pair", "loss": "simcse_unsup"}
    del pair["hard_negatives"]
    assert validate_train_config({**pair, "queue": {}}).queue_rows(world=2) == 20  # 2.5 x 8
    assert validate_train_config({**pair, "queue": {"size": 7}}).queue_rows(world=2) == 7
    assert "not both" in _load(tmp_path, {"queue": {"size": 8, "batches": 2}})


@pytest.mark.parametrize(
    ("kind", "loss"),
    [("dual", "listwise_ce"), ("cross", "infonce"), ("joint", "cross_batch"),
     ("pair", "masked_lm"), ("retromae", "cosent"), ("dual", "no_such_loss")],
)  # fmt: skip
def test_a_loss_of_another_kind_is_refused_naming_the_kinds_losses(tmp_path, kind, loss):
    raw = {"kind": kind, "loss": loss, **({"cross_model": "c"} if kind == "joint" else {})}
    message = _load(tmp_path, raw)
    allowed = ", ".join(LOSSES_BY_KIND[kind])
    assert f"key 'loss': loss '{loss}' does not train a {kind} model; use one of {allowed}" in (
        message
    )


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=str)
def test_every_shipped_training_config_validates(path):
    """Keys and values only: the data folders they name are made by `rqa prepare`."""
    from pipelines.launch_settings import split_launch_keys

    raw = yaml.safe_load(path.read_text())
    train, launch = split_launch_keys(raw)
    config = validate_train_config(train)
    assert config.kind == raw["kind"] and launch["launcher"] in ("ray", "local")
