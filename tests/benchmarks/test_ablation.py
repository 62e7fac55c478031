"""benchmarks/ablation.py without training: every row is a valid config of the shipped configs,
a row started from a finished baseline run reruns exactly the stages it changes (by the
runner's own fingerprints, with the baseline's folders hard-linked in), and the table's means
and paired changes.

The baseline run is made by the real runner with stages replaced by fakes that write their
declared outputs (as tests/pipelines/test_stage_graph.py does): its manifests and fingerprints
are the real ones.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pipelines import cli, runner
from pipelines.overrides import parse_set
from pipelines.runner import format_plan, run_pipeline
from pipelines.stages import stage_spec

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "benchmarks"))  # the scripts import their siblings by name

import ablation  # noqa: E402
from ablation_rows import ROWS, chosen_rows  # noqa: E402
from ablation_runs import (  # noqa: E402
    Setup,
    baseline_sets,
    check_row_plan,
    plan_against,
    row_sets,
    shared_stages,
    start_row_run,
)
from ablation_table import Line, markdown  # noqa: E402

CONFIGS = ("scifact", "demo")
ALL = ("prepare", "train_dual_0", "mine", "train_cross", "denoise", "train_dual_1", "augment",
       "train_dual_2", "train_joint", "evaluate")  # fmt: skip
UP_TO_DENOISE = ("prepare", "train_dual_0", "mine", "train_cross", "denoise")
# Per row, written out from the recipe: (stages whose baseline folders the row reuses, stages
# its run trains or computes). Everything else is switched off in the row's run.
EXPECTED = {
    "undenoised": (("prepare", "train_dual_0", "mine"), ("train_dual_1", "evaluate")),
    "positive_aware": (("prepare", "train_dual_0"), ("mine", "train_dual_1", "evaluate")),
    "positive_aware_denoise": (
        ("prepare", "train_dual_0"),
        ("mine", "train_cross", "denoise", "train_dual_1", "evaluate"),
    ),
    "no_duplicates": (UP_TO_DENOISE, ("train_dual_1", "evaluate")),
    "mask_false_negatives": (UP_TO_DENOISE, ("train_dual_1", "evaluate")),
    "no_duplicates_mask": (UP_TO_DENOISE, ("train_dual_1", "evaluate")),
    "joint_margin_mse": (ALL[:-2], ("train_joint", "evaluate")),
    "joint_augmented": (ALL[:-2], ("train_joint", "evaluate")),
    "joint_group4": (ALL[:-2], ("train_joint", "evaluate")),
    "select_last": (UP_TO_DENOISE, ("train_dual_1", "evaluate")),
    "select_best": (UP_TO_DENOISE, ("train_dual_1", "evaluate")),
}


def fake_run(ctx) -> dict:
    """Writes every output the stage declares, each holding one file, as the real stage
    would write its tables and models."""
    ctx.out.mkdir(parents=True)
    for name in stage_spec(ctx.config, ctx.name).writes:
        (ctx.out / name).mkdir()
        (ctx.out / name / "part-0.bin").write_bytes(f"{ctx.name}/{name}".encode())
    return {}


def fake_stages(monkeypatch) -> None:
    monkeypatch.setattr(runner, "stage_module", lambda stage: types.SimpleNamespace(run=fake_run))


def setup_for(name: str, root: Path, data: Path, model: str | None = None) -> Setup:
    return Setup(REPO / "configs" / f"{name}.yaml", root, model=model, data_beir=data)


@pytest.fixture(scope="module", params=CONFIGS)
def baseline(request, tmp_path_factory, scifact_dir) -> Setup:
    """A finished baseline run (seed 0) of a shipped config, made by the runner with fakes
    (the start model: a local folder, as `--model` gives it)."""
    root = tmp_path_factory.mktemp(request.param)
    (root / "base-model").mkdir()
    (root / "base-model" / "config.json").write_text("{}")
    setup = setup_for(request.param, root / "runs", scifact_dir, str(root / "base-model"))
    with pytest.MonkeyPatch.context() as patch:
        fake_stages(patch)
        run_pipeline(setup.load(baseline_sets(0), setup.run_dir("baseline", 0)))
    return setup


def dotted(mapping: dict, key: str) -> object:
    for part in key.split("."):
        mapping = mapping[part]
    return mapping


@pytest.mark.parametrize("name", CONFIGS)
def test_every_row_is_a_valid_config_with_its_keys_set(name, scifact_dir, tmp_path):
    setup = setup_for(name, tmp_path, scifact_dir)
    assert [row.name for row in ROWS] == list(EXPECTED)
    for row in ROWS:
        sets = row_sets(setup, row, seed=1)
        config = setup.load(sets, setup.run_dir(row.name, 1))  # validated, graph checked
        resolved = config.model_dump(mode="json")
        for key, value in parse_set([*row.sets, "seed=1"]).items():
            for leaf in _leaves({key: value}):
                assert dotted(resolved, leaf[0]) == leaf[1], (row.name, leaf)
        linked, reruns = EXPECTED[row.name]
        assert config.enabled_stages() == [s for s in ALL if s in {*linked, *reruns}], row.name
        evaluate = config.stages.evaluate
        assert (evaluate.zero_shot, evaluate.bm25, evaluate.rerank_depth) == (False, False, 20)


@pytest.mark.parametrize("name", CONFIGS)
def test_rows_mining_positive_aware_let_queries_left_without_negatives_draw_random_ones(
    name, scifact_dir, tmp_path
):
    """Positive-aware mining can keep no negative for a query (28 of the demo's 709 train
    queries at 0.95), and a training stage reading such examples stops the run unless it may
    draw random passages: the demo's positive_aware_denoise row stopped in train_cross so."""
    setup = setup_for(name, tmp_path, scifact_dir)
    rows = [row for row in ROWS if any("positive_aware" in key for key in row.sets)]
    assert {row.name for row in rows} == {"positive_aware", "positive_aware_denoise"}
    for row in rows:
        config = setup.load(row_sets(setup, row, seed=0), setup.run_dir(row.name, 0))
        stages, enabled = config.stages, config.enabled_stages()
        assert stages.mine.positive_aware is not None
        training = [s for s in ("train_cross", "train_dual_1") if s in enabled]
        assert training == (["train_dual_1"] if row.name == "positive_aware" else
                            ["train_cross", "train_dual_1"]), row.name  # fmt: skip
        for stage in training:
            assert getattr(stages, stage).train.random_negatives, (row.name, stage)


def _leaves(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_a_row_started_from_the_baseline_reruns_exactly_what_it_changes(
    baseline, row, monkeypatch, capsys
):
    setup, linked, reruns = baseline, *EXPECTED[row.name]
    baseline_dir, row_dir = setup.run_dir("baseline", 0), setup.run_dir(row.name, 0)
    sets = row_sets(setup, row, seed=0)
    config = setup.load(sets, row_dir)
    before = {p: p.read_bytes() for p in baseline_dir.rglob("_manifest.json")}

    shared = shared_stages(plan_against(config, baseline_dir))
    assert shared == list(linked)
    assert start_row_run(baseline_dir, row_dir, shared) == list(linked)
    for stage in linked:
        files = [p for p in (baseline_dir / stage).rglob("*") if p.is_file()]
        assert files
        for src in files:
            copy = row_dir / src.relative_to(baseline_dir)
            assert copy.stat().st_ino == src.stat().st_ino, copy
    plans = check_row_plan(config, shared)
    assert [p.stage for p in plans if p.runs] == list(reruns)
    assert {p.stage for p in plans if p.status == "cached"} == set(linked)

    # the printed command is that plan: `rqa run ... --dry-run` prints it line for line
    capsys.readouterr()
    assert cli.main([*setup.command(sets, row_dir), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == format_plan(plans)

    # and the runner runs just those, leaving the baseline's files as they were
    fake_stages(monkeypatch)
    ran = [r["stage"] for r in run_pipeline(config) if r["status"] == "ran"]
    assert ran == list(reruns)
    assert {p: p.read_bytes() for p in baseline_dir.rglob("_manifest.json")} == before
    assert start_row_run(baseline_dir, row_dir, shared) == []  # already there: nothing relinked


def write_metrics(run_dir: Path, metrics: dict) -> None:
    (run_dir / "evaluate").mkdir(parents=True)
    (run_dir / "evaluate" / "metrics.json").write_text(json.dumps(metrics))


def test_the_table_reads_each_rows_stage_and_pairs_its_change_by_seed(tmp_path):
    setup = Setup(REPO / "configs" / "demo.yaml", tmp_path)
    rows = chosen_rows("undenoised,joint_margin_mse")
    for seed, dual_1, joint in ((0, 0.70, 0.75), (1, 0.72, 0.77)):
        write_metrics(setup.run_dir("baseline", seed), {
            "train_dual_0": {"ndcg@10": 0.1}, "train_dual_1": {"ndcg@10": dual_1},
            "train_joint": {"ndcg@10": joint, "rerank_ndcg@10": 0.9},
        })  # fmt: skip
    write_metrics(setup.run_dir("undenoised", 0), {"train_dual_1": {"ndcg@10": 0.64}})
    write_metrics(setup.run_dir("undenoised", 1), {"train_dual_1": {"ndcg@10": 0.69}})
    joint_0 = {"train_dual_1": {"ndcg@10": 0.5}, "train_joint": {"ndcg@10": 0.80}}
    write_metrics(setup.run_dir("joint_margin_mse", 0), joint_0)  # its seed 1 has not run

    baselines, lines = ablation.table_lines(setup, rows, [0, 1])
    assert [(b.stage, b.values) for b in baselines] == [
        ("train_dual_1", {0: 0.70, 1: 0.72}), ("train_joint", {0: 0.75, 1: 0.77}),
    ]  # fmt: skip
    undenoised, joint = lines
    assert undenoised.values == {0: 0.64, 1: 0.69}
    assert undenoised.mean() == pytest.approx((0.64 + 0.69) / 2)
    assert undenoised.delta(baselines[0]) == pytest.approx(((0.64 - 0.70) + (0.69 - 0.72)) / 2)
    assert joint.values == {0: 0.80, 1: None}
    assert joint.mean() == pytest.approx(0.80)
    assert joint.delta(baselines[1]) == pytest.approx(0.80 - 0.75)  # seed 0, the one pair

    cells = {
        line.split("|")[1].strip() + "@" + line.split("|")[3].strip():
        [c.strip() for c in line.split("|")[4:-1]]
        for line in markdown(baselines, lines, [0, 1]).splitlines()[2:]
    }  # fmt: skip
    assert cells == {
        "baseline@train_dual_1": ["0.700", "0.720", "0.710", "–"],
        "baseline@train_joint": ["0.750", "0.770", "0.760", "–"],
        "undenoised@train_dual_1": ["0.640", "0.690", "0.665", "-0.045"],
        "joint_margin_mse@train_joint": ["0.800", "not yet run", "0.800", "+0.050"],
    }


def test_a_baseline_alone_is_shown_at_each_retriever_stage_it_evaluated(tmp_path):
    """`--rows baseline` (the baseline runs only, e.g. before the levers on another config): the
    table lists the baseline's retrievers, where before it had no stage and the table failed."""
    setup = Setup(REPO / "configs" / "demo.yaml", tmp_path)
    write_metrics(setup.run_dir("baseline", 0), {
        "zero-shot": {"ndcg@10": 0.6}, "train_dual_0": {"ndcg@10": 0.7},
        "train_joint": {"ndcg@10": 0.8},
    })  # fmt: skip
    baselines, lines = ablation.table_lines(setup, chosen_rows("baseline"), [0, 1])
    assert lines == []
    assert [(b.stage, b.values) for b in baselines] == [
        ("train_dual_0", {0: 0.7, 1: None}), ("train_joint", {0: 0.8, 1: None}),
    ]  # fmt: skip
    rows = markdown(baselines, lines, [0, 1]).splitlines()[2:]
    assert [[c.strip() for c in r.split("|")[3:-1]] for r in rows] == [
        ["train_dual_0", "0.700", "not yet run", "0.700", "–"],
        ["train_joint", "0.800", "not yet run", "0.800", "–"],
    ]  # fmt: skip
    nothing_yet, _ = ablation.table_lines(setup, [], [1])
    assert [b.stage for b in nothing_yet] == [
        "train_dual_0", "train_dual_1", "train_dual_2", "train_joint",
    ]  # fmt: skip


def test_a_line_of_no_runs_says_so():
    empty, base = Line("r", "about", "train_dual_1", {0: None}), Line("b", "", "train_dual_1")
    row = markdown([base], [empty], [0]).splitlines()[-1]
    assert [c.strip() for c in row.split("|")[4:-1]] == ["not yet run"] * 3


def test_dry_run_prints_each_command_and_plan_and_makes_nothing(
    scifact_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(REPO)
    argv = ["--config", "configs/demo.yaml", "--seeds", "3", "--rows", "positive_aware",
            "--dry-run", "--root", str(tmp_path / "runs"), "--data-beir", str(scifact_dir),
            "--model", "some/model-id"]  # fmt: skip
    assert ablation.main(argv) == 0
    out = capsys.readouterr().out
    row_dir = tmp_path / "runs" / "demo" / "positive_aware-s3"
    assert f"--run-dir {row_dir} --model some/model-id --data-beir {scifact_dir}" in out
    assert "--set seed=3 --set stages.denoise.enabled=false" in out
    assert "--set stages.mine.positive_aware.max_ratio=0.95" in out
    # against the baseline it has not run yet: mine is stale by its one changed key
    assert "mine          stale    run    config stages.mine.positive_aware changed" in out
    assert "train_dual_0  cached   skip" in out
    assert not (tmp_path / "runs").exists()


def test_an_unknown_row_is_refused_naming_the_rows():
    with pytest.raises(SystemExit, match="no row 'denoised'.*undenoised"):
        chosen_rows("denoised")


def test_where_links_fail_the_row_starts_from_copies(baseline, monkeypatch):
    import ablation_runs

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(ablation_runs.os, "link", no_links)
    row = chosen_rows("no_duplicates")[0]
    setup, row_dir = baseline, baseline.run_dir("copied", 0)
    config = setup.load(row_sets(setup, row, seed=0), row_dir)
    shared = shared_stages(plan_against(config, setup.run_dir("baseline", 0)))
    start_row_run(setup.run_dir("baseline", 0), row_dir, shared)
    src = setup.run_dir("baseline", 0) / "mine" / "examples-train" / "part-0.bin"
    copy = row_dir / "mine" / "examples-train" / "part-0.bin"
    assert copy.read_bytes() == src.read_bytes() and copy.stat().st_ino != src.stat().st_ino
    assert [p.stage for p in check_row_plan(config, shared) if p.runs] == [
        "train_dual_1",
        "evaluate",
    ]


def fake_evaluate_run(ctx) -> dict:
    """Fakes as above; evaluate writes metrics.json with a number per retriever it reads,
    taken from the run folder's name (so each run's differ)."""
    if ctx.name != "evaluate":
        return fake_run(ctx)
    ctx.out.mkdir(parents=True)
    value = len(ctx.out.parent.name) / 100
    metrics = {name: {"ndcg@10": value} for name in ctx.inputs if name.startswith("train_")}
    (ctx.out / "metrics.json").write_text(json.dumps(metrics))
    return {}


def test_a_whole_ablation_runs_each_row_on_the_baseline_and_writes_the_table(
    scifact_dir, tmp_path, monkeypatch, capsys
):
    """main() as a user runs it, `rqa run` replaced by the runner with fake stages in-process:
    the baseline first, then each row with only its own stages run."""
    import common

    from pipelines.config import load_pipeline_config

    ran: dict[str, list[str]] = {}

    def fake_rqa(args: list[str]) -> int:
        parsed = cli.build_parser().parse_args(args)
        config = load_pipeline_config(parsed.config, parsed.data_beir, parse_set(parsed.set))
        config = config.model_copy(update={"run_dir": parsed.run_dir, "model": parsed.model})
        records = run_pipeline(config)
        ran[parsed.run_dir.name] = [r["stage"] for r in records if r["status"] == "ran"]
        return 0

    monkeypatch.setattr(
        runner, "stage_module", lambda s: types.SimpleNamespace(run=fake_evaluate_run)
    )
    monkeypatch.setattr(ablation, "rqa", fake_rqa)
    monkeypatch.setattr(common, "REPO", tmp_path)  # benchmarks/results/ stays as it is
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.chdir(REPO)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    rows = "undenoised,joint_margin_mse"
    argv = ["--config", "configs/demo.yaml", "--seeds", "0,1", "--rows", rows,
            "--root", str(tmp_path / "runs"), "--data-beir", str(scifact_dir),
            "--model", str(tmp_path / "model")]  # fmt: skip
    assert ablation.main(argv) == 0

    assert list(ran) == [f"{run}-s{seed}" for seed in (0, 1)
                         for run in ("baseline", "undenoised", "joint_margin_mse")]  # fmt: skip
    assert ran["baseline-s1"] == list(ALL)
    for seed in (0, 1):
        assert ran[f"undenoised-s{seed}"] == list(EXPECTED["undenoised"][1])
        assert ran[f"joint_margin_mse-s{seed}"] == list(EXPECTED["joint_margin_mse"][1])
    written = json.loads((tmp_path / "results" / "ablation-demo.json").read_text())
    values = {
        (r["row"], r["stage"]): (r["ndcg@10"], r["delta_vs_baseline"]) for r in written["rows"]
    }
    base, undenoised, joint = (
        len("baseline-s0") / 100,
        len("undenoised-s0") / 100,
        len("joint_margin_mse-s0") / 100,
    )
    assert values[("undenoised", "train_dual_1")][0] == {"0": undenoised, "1": undenoised}
    assert values[("undenoised", "train_dual_1")][1] == pytest.approx(undenoised - base)
    assert values[("joint_margin_mse", "train_joint")][1] == pytest.approx(joint - base)
    assert values[("baseline", "train_joint")] == ({"0": base, "1": base}, None)
    assert "| undenoised " in capsys.readouterr().out
    assert written["commands"]["undenoised-s1"].startswith("rqa run ")
    assert "--set seed=1 --set stages.denoise.enabled=false" in written["commands"]["undenoised-s1"]
