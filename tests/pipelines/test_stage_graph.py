"""The stage graph as the runner derives it from the stages' declarations: which stages run,
which are cached or stale and why, for --from / --force / --only, code and data changes.

Stages are replaced by fakes that write their declared outputs (the runner is what is tested);
tests/pipelines/test_pipeline_run.py runs the real stages.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from pipelines import fingerprint as fingerprint_module
from pipelines import runner
from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.runner import check_graph, needs, plan_run, run_pipeline
from pipelines.stages import stage_module, stage_spec
from pipelines.stages.spec import Output, StageSpec
from retrieval.errors import ConfigError, MissingInputError

DOWNSTREAM_OF_DUAL_1 = {"train_dual_1", "augment", "train_dual_2", "train_joint", "evaluate"}


def fake_run(ctx) -> dict:
    """Writes every output the stage declares, as the real stage would."""
    ctx.out.mkdir(parents=True)
    for name in stage_spec(ctx.config, ctx.name).writes:
        (ctx.out / name).mkdir()
    return {"inputs": sorted(ctx.inputs)}


@pytest.fixture
def fake_stages(monkeypatch):
    monkeypatch.setattr(runner, "stage_module", lambda stage: types.SimpleNamespace(run=fake_run))


@pytest.fixture
def config(tmp_path) -> PipelineConfig:
    data, model = tmp_path / "beir", tmp_path / "base-model"
    for folder in (data, model):
        folder.mkdir()
        (folder / "file.txt").write_text("v1")
    return PipelineConfig.model_validate(
        {
            "name": "graph",
            "run_dir": str(tmp_path / "run"),
            "model": str(model),
            "data": {"beir": str(data)},
            "stages": {"augment": {"from_corpus": 5}, "train_joint": {"enabled": True}},
        }
    )


def ran(records: list[dict]) -> set[str]:
    return {r["stage"] for r in records if r["status"] == "ran"}


def test_first_run_runs_every_stage_and_the_second_none(fake_stages, config):
    assert ran(run_pipeline(config)) == set(config.enabled_stages())
    assert ran(run_pipeline(config)) == set()
    assert {p.status for p in plan_run(config)} == {"cached"}


def test_from_reruns_the_stage_and_every_stage_that_reads_it(fake_stages, config):
    run_pipeline(config)
    assert ran(run_pipeline(config, start="train_dual_1")) == DOWNSTREAM_OF_DUAL_1
    assert {p.status for p in plan_run(config)} == {"cached"}


def test_force_reruns_the_stage_and_its_dependents(fake_stages, config):
    run_pipeline(config)
    assert ran(run_pipeline(config, force=("denoise",))) == {
        "denoise", "train_dual_1", "augment", "train_dual_2", "train_joint", "evaluate"
    }  # fmt: skip


def test_only_runs_one_stage_and_leaves_its_readers_stale_with_the_reason(fake_stages, config):
    run_pipeline(config)
    assert ran(run_pipeline(config, only="denoise", force=("denoise",))) == {"denoise"}
    plans = {p.stage: p for p in plan_run(config)}
    assert plans["train_dual_1"].status == "stale"
    assert any("denoise/examples-train" in r for r in plans["train_dual_1"].reasons)
    assert plans["mine"].status == "cached" and plans["denoise"].status == "cached"


def test_dry_run_says_what_would_run_and_does_nothing(fake_stages, config):
    plans = plan_run(config)
    assert [p.stage for p in plans] == config.enabled_stages()
    assert all(p.status == "missing" and p.runs for p in plans)
    assert not config.resolved_run_dir().exists()


def test_a_config_change_names_the_key_and_stales_what_follows(fake_stages, config):
    run_pipeline(config)
    changed = config.model_copy(deep=True)
    changed.stages.mine.depth = 7
    plans = {p.stage: p for p in plan_run(changed)}
    assert plans["mine"].reasons == ["config stages.mine.depth changed"]
    assert plans["train_dual_0"].status == "cached"
    assert all(plans[s].runs for s in STAGE_ORDER[STAGE_ORDER.index("mine") :])
    assert any("is rerun first" in r for r in plans["train_cross"].reasons)


def test_a_code_change_stales_the_stages_that_run_that_code(fake_stages, config, monkeypatch):
    run_pipeline(config)
    real = fingerprint_module.code_hashes

    def edited(module: str) -> dict:
        hashes = dict(real(module))
        if "retrieval/indexing/faiss_index.py" in hashes:
            hashes["retrieval/indexing/faiss_index.py"] = "edited"
        return hashes

    monkeypatch.setattr(fingerprint_module, "code_hashes", edited)
    plans = {p.stage: p for p in plan_run(config)}
    assert plans["prepare"].status == "cached"  # prepare does not search an index
    assert plans["mine"].status == "stale"
    assert "code changed: retrieval/indexing/faiss_index.py" in plans["mine"].reasons
    assert ran(run_pipeline(config)) >= {"mine", "train_cross", "denoise", "evaluate"}


def test_a_data_change_stales_every_stage(fake_stages, config):
    run_pipeline(config)
    (config.data.beir / "file.txt").write_text("v2, a new version of the corpus")
    plans = plan_run(config)
    assert plans[0].reasons == [f"input data ({config.data.beir}) changed"]
    assert all(p.runs for p in plans)


def test_the_same_data_written_again_leaves_every_stage_cached(fake_stages, config):
    """A volume provisioned again, `rsync` without -t, `cp` without -p: the same bytes under
    new modification times (and a new inode) are the same input."""
    run_pipeline(config)
    for folder in (config.data.beir, Path(config.model)):
        copy = folder / "file.txt.new"
        copy.write_bytes((folder / "file.txt").read_bytes())
        os.utime(copy, ns=(10**18, 10**18))  # 2001 -> far from the first write
        copy.replace(folder / "file.txt")
    plans = plan_run(config)
    assert [(p.stage, p.status) for p in plans if p.status != "cached"] == []


def test_a_data_change_that_keeps_size_and_modification_time_stales_every_stage(
    fake_stages, config
):
    run_pipeline(config)
    data = config.data.beir / "file.txt"
    before = data.stat()
    data.write_text("v9")  # same size as "v1"
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    plans = plan_run(config)
    assert plans[0].reasons == [f"input data ({config.data.beir}) changed"]
    assert all(p.runs for p in plans)


def test_a_changed_base_model_stales_the_stages_that_start_from_it(fake_stages, config):
    run_pipeline(config)
    (Path(config.model) / "file.txt").write_text("v2: the base model was fine-tuned again")
    plans = {p.stage: p for p in plan_run(config)}
    assert plans["prepare"].status == "cached"
    assert plans["train_dual_0"].status == "stale" and plans["train_cross"].status == "stale"


def test_evaluate_declares_the_re_ranker_it_reads(config):
    assert "train_joint" in needs(config, "evaluate")
    rocketqa = config.model_copy(deep=True)
    rocketqa.stages.train_joint.enabled = False
    assert "train_cross" in needs(rocketqa, "evaluate")
    assert stage_spec(rocketqa, "evaluate").reads["cross_model"] == Output("train_cross", "model")


def test_an_unknown_stage_name_is_refused_not_sent_to_training():
    with pytest.raises(ConfigError, match="no stage named 'trian_cross'"):
        stage_module("trian_cross")


def test_reading_an_output_the_producer_does_not_declare_is_refused(config, monkeypatch):
    import pipelines.stages.denoise as denoise

    real = denoise.spec

    def misdeclared(cfg, name):
        spec = real(cfg, name)
        return StageSpec({**spec.reads, "x": Output("mine", "candidates-dev")}, spec.writes)

    monkeypatch.setattr(denoise, "spec", misdeclared)
    with pytest.raises(ConfigError, match="reads mine/candidates-dev, which mine does not write"):
        check_graph(config)


def test_a_stage_whose_input_never_ran_is_a_one_line_error(fake_stages, config):
    with pytest.raises(MissingInputError, match="stage mine needs prepare, which has not run"):
        run_pipeline(config, only="mine")


def test_corpus_embeddings_of_a_model_are_reused_not_encoded_again(config):
    evaluate_reads = stage_spec(config, "evaluate").reads
    assert evaluate_reads["train_dual_0:embeddings"] == Output("mine", "embeddings")
    assert evaluate_reads["train_dual_1:embeddings"] == Output("augment", "embeddings")
    assert "train_dual_2:embeddings" not in evaluate_reads  # nobody encoded with it before
    no_dual_1 = config.model_copy(deep=True)
    no_dual_1.stages.train_dual_1.enabled = False  # augment now uses mine's model
    assert stage_spec(no_dual_1, "augment").reads["embeddings"] == Output("mine", "embeddings")
    assert "embeddings" not in stage_spec(no_dual_1, "augment").writes
    check_graph(no_dual_1)


def test_a_second_run_on_a_busy_run_directory_stops_before_any_stage(fake_stages, config):
    from pipelines.run_lock import DirectoryInUseError, RunLock

    with RunLock(config.resolved_run_dir(), purpose="rqa run"):
        with pytest.raises(DirectoryInUseError, match=str(config.resolved_run_dir())):
            run_pipeline(config)
    assert not (config.resolved_run_dir() / "prepare").exists()
    # free again once the holder is gone
    assert ran(run_pipeline(config)) == set(config.enabled_stages())
