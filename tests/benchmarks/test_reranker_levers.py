"""benchmarks/reranker_levers.py without training: each lever changes train_cross alone, by the
amount its name says, on both shipped configs; a lever's run starts from the baseline's
prepare, train_dual_0 and mine (hard links) and reruns train_cross only; the table's paired
changes and margins are the arithmetic written out here.

The baseline run is made by the real runner with stages replaced by fakes that write their
declared outputs (as tests/benchmarks/test_ablation.py does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.runner import read_stage_manifest, run_pipeline
from tests.benchmarks.test_ablation import fake_stages, setup_for

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "benchmarks"))  # the scripts import their siblings by name

import reranker_levers  # noqa: E402
from ablation_runs import baseline_sets  # noqa: E402
from reranker_lever_rows import LEVERS, chosen_levers  # noqa: E402

BF16 = "configs/deepspeed/bf16.json"  # DeepSpeed bf16, ZeRO 0: float32 master weights

# The train_cross keys each lever gives, written out from the shipped configs: configs/demo.yaml
# trains 1 epoch of groups of 8 at 128 tokens from train_dual_0 with no deep negatives and
# mine keeps 8; configs/scifact.yaml 3 epochs in bf16 of groups of 8 at 256 tokens, 16 deep
# negatives.
EXPECTED = {
    "demo": {
        "double_epochs": {"train.epochs": 2},
        # 15 negatives a group: mine keeps 8, so 7 come from its deeper ranks
        "double_groups": {"train.group_size": 16, "deep_negatives": 7},
        # one epoch does not halve: refused (the refusal's own test is below)
        "double_groups_half_queries": None,
        "bf16_more_epochs": {"train.epochs": 1.5, "train.deepspeed": BF16},
        "bf16_double_epochs": {"train.epochs": 2, "train.deepspeed": BF16},
        "half_lr": {"train.lr": 1.0e-4, "train.head_lr": 2.5e-3},
        "base_init": {"init": "base"},
        "deeper_negatives": {"deep_negatives": 8},
        "pointwise_bce": {"train.loss": "pointwise_bce"},
        "retriever_kl": {"train.loss": "listwise_ce_kl"},
        "double_epochs_retriever_kl": {"train.epochs": 2, "train.loss": "listwise_ce_kl"},
        "longer_pairs": {"train.cross_max_len": 192},
    },
    "scifact": {
        "double_epochs": {"train.epochs": 6},
        "double_groups": {"train.group_size": 16},
        # three epochs do not halve: refused
        "double_groups_half_queries": None,
        # the config trains in bf16 already: only the epochs change
        "bf16_more_epochs": {"train.epochs": 4.5},
        "bf16_double_epochs": {"train.epochs": 6},
        "half_lr": {"train.lr": 1.0e-4, "train.head_lr": 2.5e-3},
        "base_init": {"init": "base"},
        "deeper_negatives": {"deep_negatives": 32},
        "pointwise_bce": {"train.loss": "pointwise_bce"},
        "retriever_kl": {"train.loss": "listwise_ce_kl"},
        "double_epochs_retriever_kl": {"train.epochs": 6, "train.loss": "listwise_ce_kl"},
        "longer_pairs": {"train.cross_max_len": 384},
    },
}


def _flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", ["demo", "scifact"])
def test_each_lever_changes_train_cross_alone_by_what_its_name_says(name, scifact_dir, tmp_path):
    setup = setup_for(name, tmp_path, scifact_dir)
    shipped = _flat(setup.load(baseline_sets(0), tmp_path / "x").model_dump(mode="json"))
    assert [lever.name for lever in LEVERS] == list(EXPECTED[name])
    for lever in LEVERS:
        if EXPECTED[name][lever.name] is None:
            with pytest.raises(SystemExit, match="does not halve"):
                reranker_levers.lever_sets(setup, lever, seed=0)
            continue
        sets = reranker_levers.lever_sets(setup, lever, seed=0)
        changed = _flat(setup.load(sets, tmp_path / "x").model_dump(mode="json"))
        diff = {k: v for k, v in changed.items() if shipped.get(k) != v}
        expected = {f"stages.train_cross.{k}": v for k, v in EXPECTED[name][lever.name].items()}
        assert diff == expected, lever.name


def test_base_init_is_refused_where_train_cross_starts_from_base_already(scifact_dir, tmp_path):
    setup = setup_for("demo", tmp_path, scifact_dir)
    config = setup.load(["stages.train_cross.init=base"], tmp_path / "x")
    with pytest.raises(SystemExit, match="already starts train_cross from base"):
        chosen_levers("base_init")[0].sets(config)


def test_groups_over_half_the_queries_are_refused_where_batch_or_epochs_do_not_halve(
    scifact_dir, tmp_path
):
    setup = setup_for("scifact", tmp_path, scifact_dir)
    lever = chosen_levers("double_groups_half_queries")[0]
    config = setup.load(["stages.train_cross.train.batch_size=3"], tmp_path / "x")
    with pytest.raises(SystemExit, match="batch_size 3 does not halve"):
        lever.sets(config)
    with pytest.raises(SystemExit, match="epochs 1 does not halve"):
        lever.sets(setup.load(["stages.train_cross.train.epochs=1"], tmp_path / "y"))


def test_an_unknown_lever_is_an_error_naming_the_levers_there_are():
    with pytest.raises(SystemExit, match="no lever 'more_data' .*double_epochs"):
        chosen_levers("double_epochs,more_data")


def test_a_lever_run_starts_from_the_baselines_inputs_and_trains_train_cross_only(
    scifact_dir, tmp_path, monkeypatch
):
    (tmp_path / "base-model").mkdir()
    (tmp_path / "base-model" / "config.json").write_text("{}")
    baselines = setup_for("demo", tmp_path / "ablation", scifact_dir, str(tmp_path / "base-model"))
    fake_stages(monkeypatch)
    run_pipeline(baselines.load(baseline_sets(1), baselines.run_dir("baseline", 1)))
    baseline_dir = baselines.run_dir("baseline", 1)
    setup = setup_for("demo", tmp_path / "levers", scifact_dir, str(tmp_path / "base-model"))
    calls = []
    monkeypatch.setattr(reranker_levers, "rqa", lambda args: calls.append(args) or cli.main(args))
    lever = chosen_levers("double_epochs")[0]

    assert reranker_levers.run_lever(setup, baseline_dir, lever, seed=1)

    run_dir = setup.run_dir("double_epochs", 1)
    assert calls[0][-2:] == ["--only", "train_cross"]
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name[0] != ".") == [
        "mine", "prepare", "train_cross", "train_dual_0"]  # fmt: skip
    for stage in ("prepare", "train_dual_0", "mine"):
        for src in (baseline_dir / stage).rglob("*"):
            if src.is_file():
                assert (run_dir / src.relative_to(baseline_dir)).stat().st_ino == src.stat().st_ino
    ours, theirs = (read_stage_manifest(d / "train_cross") for d in (run_dir, baseline_dir))
    assert ours["run_id"] != theirs["run_id"]
    assert ours["fingerprint"] != theirs["fingerprint"]  # the lever's settings, not a copy


def test_the_table_pairs_each_levers_change_by_seed_and_counts_seeds_over_the_margin():
    # seed -> (retriever stage, its nDCG@10, {re-ranker: {depth: (alone, fused)}})
    scores = {
        0: ("train_joint", 0.70, {"baseline": {100: (0.60, 0.72)}, "a": {100: (0.73, 0.75)},
                                  "b": {100: (0.61, 0.70)}}),
        1: ("train_joint", 0.80, {"baseline": {100: (0.70, 0.81)}, "a": {100: (0.81, 0.83)}}),
    }  # fmt: skip
    rows = reranker_levers.summary_rows(["baseline", "a", "b"], [0, 1], scores, depth=100)
    baseline, a, b = rows
    assert baseline[:4] == ["baseline", 0.6, 0.7, 0.65] and baseline[4] == "-"
    # a: alone +0.13 and +0.11 (mean +0.12), fused +0.03 and +0.02; over the retriever +0.03
    # in seed 0 (>= 0.02) and +0.01 in seed 1 (not)
    assert a[1:4] == [0.73, 0.81, 0.77]
    assert a[4] == "+0.1200" and a[5] == 0.79 and a[6] == "+0.0250"
    assert a[7] == "+0.030 / +0.010" and a[8] == "1 of 2"
    # b has seed 0 only: its mean and change are over that seed, its seed-1 cell is empty
    assert b[1] == 0.61 and b[2] == "-" and b[3] == 0.61 and b[4] == "+0.0100"
    assert b[8] == "0 of 2"


def test_the_depth_table_averages_each_rerankers_seeds_at_each_depth(monkeypatch):
    monkeypatch.setattr(reranker_levers, "DEPTHS", (10, 100))
    scores = {
        0: ("train_joint", 0.70, {"baseline": {10: (0.66, 0.71), 100: (0.60, 0.72)},
                                  "b": {10: (0.64, 0.69), 100: (0.61, 0.70)}}),
        1: ("train_joint", 0.80, {"baseline": {10: (0.76, 0.80), 100: (0.70, 0.81)}}),
    }  # fmt: skip
    rows = reranker_levers.depth_means(["baseline", "b"], [0, 1], scores, depth=100)
    assert rows == [["retriever", 0.75, 0.75], ["baseline", 0.71, 0.65], ["b", 0.64, 0.61]]
    assert reranker_levers.depth_means(["b"], [0, 1], scores, depth=10)[1] == ["b", 0.64]
    # fused: the second of each pair
    assert reranker_levers.depth_means(["baseline"], [0, 1], scores, depth=100, fused=True) == [
        ["retriever", 0.75, 0.75], ["baseline", 0.755, 0.765]]  # fmt: skip


def _trec(path: Path, run: dict[str, dict[str, float]]) -> None:
    """A TREC run as the evaluate stage writes it."""
    from retrieval.metrics import write_trec_run

    path.parent.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, path)


def _ndcg10(qrels: dict, order: dict[str, list[str]]) -> float:
    """pytrec_eval's mean nDCG@10 of runs given as orders (scores falling with rank)."""
    import pytrec_eval

    run = {q: {p: float(len(ps) - i) for i, p in enumerate(ps)} for q, ps in order.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return sum(v["ndcg_cut_10"] for v in per_query.values()) / len(per_query)


def test_the_final_rerankers_rows_come_from_evaluates_own_scores_at_each_depth(
    tmp_path, monkeypatch
):
    from retrieval.tables.schemas import QRELS
    from retrieval.tables.store import write_table

    monkeypatch.setattr(reranker_levers, "DEPTHS", (2, 3))
    monkeypatch.setattr(sys.modules["reranker"], "DEPTHS", (2, 3))
    baseline = tmp_path / "scifact" / "baseline-s0"
    qrels = {"q1": {"c": 1}, "q2": {"a": 1}}
    write_table(baseline / "prepare" / "qrels-dev",
                [{"qid": q, "pid": p, "relevance": r} for q, d in qrels.items()
                 for p, r in d.items()], QRELS)  # fmt: skip
    # the retriever ranks a, b, c for both queries; the re-ranker orders c, b, a
    _trec(baseline / "evaluate" / "run-train_joint.trec",
          {q: {"a": 0.9, "b": 0.8, "c": 0.7} for q in qrels})  # fmt: skip
    _trec(baseline / "evaluate" / "run-rerank.trec", {q: {"a": -3.0, "b": -2.0, "c": -1.0}
                                                      for q in qrels})  # fmt: skip

    retriever, own, found = reranker_levers.seed_scores(None, tmp_path / "scifact", [], 0, depth=3)

    assert retriever == "train_joint" and list(found) == [reranker_levers.FINAL]
    assert own == pytest.approx(_ndcg10(qrels, {q: ["a", "b", "c"] for q in qrels}))
    # re-ranking the top d gives a list of d: top 2 alone b, a; top 3 c, b, a
    alone = {2: {q: ["b", "a"] for q in qrels}, 3: {q: ["c", "b", "a"] for q in qrels}}
    # RRF (k 60) of the retriever and the re-ranker: over the top 2, a and b tie at
    # 1/61 + 1/62 (trec order breaks a tie by pid, falling: b before a); over the top 3, a and
    # c get 1/61 + 1/63, more than b's 2/62, and tie (c before a)
    fused = {2: {q: ["b", "a"] for q in qrels}, 3: {q: ["c", "a", "b"] for q in qrels}}
    for depth in (2, 3):
        assert found[reranker_levers.FINAL][depth][0] == pytest.approx(
            _ndcg10(qrels, alone[depth]), abs=1e-4)  # fmt: skip
        assert found[reranker_levers.FINAL][depth][1] == pytest.approx(
            _ndcg10(qrels, fused[depth]), abs=1e-4)  # fmt: skip

    # evaluate re-ranked only the top 2: its scores cannot give a top 3
    _trec(baseline / "evaluate" / "run-rerank.trec", {q: {"a": -3.0, "b": -2.0} for q in qrels})
    assert (
        reranker_levers.FINAL
        not in reranker_levers.seed_scores(None, tmp_path / "scifact", [], 0, 3)[2]
    )
