import pytest

from retrieval.training.config import GradCacheConfig, load_train_config


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
    config = GradCacheConfig(query_chunk=8, passage_chunk=16, pair_chunk=4, keep_last=keep_last)
    assert config.summary(kind) == expected
