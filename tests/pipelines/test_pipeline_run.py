"""The whole pipeline on a tiny slice with a tiny model, as `rqa run` runs it: every stage,
caching, --only/--force, and a kill -9 in the middle of a training stage followed by a resume.

The run here mines in the driver (``actors: 0``): each Ray Data actor start costs ~6 s on 2
cores, three of them a third of this run, too much for the default tier. The same tiny
pipeline mines on a Ray Data actor in tests/pipelines/test_kill_stress.py (slow), and the
inference steps' Ray path is tests/pipelines/test_inference.py."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.config import STAGE_ORDER, load_pipeline_config
from pipelines.fingerprint import output_id
from retrieval.metrics import evaluate
from retrieval.metrics.trec_run import read_trec_run
from retrieval.models import CrossEncoder
from retrieval.rerank import score_pairs
from retrieval.tables import read_manifest, read_table
from retrieval.tables.labels import read_qrels
from tests.helpers_cli import finish, rqa, spawn

# Every stage the tiny config runs: all but pretrain (tests/pipelines/test_pretrain_stage.py).
STAGES = [s for s in STAGE_ORDER if s != "pretrain"]
TRAIN = {
    "max_steps": 4,
    "batch_size": 4,
    "launcher": "local",
    "checkpoint_every": 2,
    "log_every": 1,
}


def tiny_config(
    tmp_path: Path, name: str, model: Path, scifact: Path, mine_actors: int = 1
) -> Path:
    config = {
        "name": name,
        "run_dir": str(tmp_path / name),
        "model": str(model),
        "model_settings": {"query_max_len": 24, "passage_max_len": 48},
        "data": {"beir": str(scifact), "max_corpus": 150},
        # bf16 on every CPU (emulated where it is not native, where "auto" would pick float32):
        # the tiny random re-ranker's logits then tie alike everywhere, and augment's relative
        # rule (the re-ranker puts the retriever's top passage first) labels queries; in
        # float32 it labelled none of the 12
        "precision": "bf16",
        "stages": {
            "train_dual_0": {"bm25_negatives": 5, "train": {**TRAIN, "hard_negatives": 1}},
            # mine_actors 1: on a Ray Data actor; 0: in the driver
            "mine": {"depth": 10, "negatives": 4, "actors": mine_actors, "title_queries": 6},
            "train_cross": {"train": {**TRAIN, "loss": "pointwise_bce", "group_size": 3,
                                      "cross_max_len": 64}},
            # a random re-ranker is unsure of everything: loose thresholds keep lists non-empty
            "denoise": {"negative_below": 0.9, "positive_above": 0.99, "undenoised": 2},
            "train_dual_1": {"train": {**TRAIN, "hard_negatives": 1, "random_negatives": True}},
            "augment": {"from_corpus": 12, "depth": 5, "mode": "relative", "margin": 0.0},
            "train_dual_2": {"train": TRAIN},
            # augmented: augment's pseudo-labelled examples after denoise's lists; a pseudo-query
            # whose passages all score within the margin of its top one has no negatives
            "train_joint": {"enabled": True, "augmented": True,
                            "train": {**TRAIN, "group_size": 3, "cross_max_len": 64,
                                      "random_negatives": True}},
            # train_cross's re-ranker scores evaluate's list too, fused with train_joint's
            "evaluate": {"k": 20, "rerank_depth": 5, "fuse_train_cross": True},
        },
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "_manifest.json").read_text())


SPY_LOG = "corpus-embeddings.jsonl"  # beside the run folder: tests/helpers_corpus_spy.py
STDERR = "rqa-stderr.log"  # beside it too: what `rqa run` logged


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert_dir, scifact_dir):
    """`rqa run` of the tiny config, its corpus encodings and evaluate's searches logged by
    tests/helpers_corpus_spy.py (which only watches) to SPY_LOG beside the run folder."""
    tmp = tmp_path_factory.mktemp("pipeline")
    config = tiny_config(tmp, "whole", tiny_bert_dir, scifact_dir, mine_actors=0)
    spied = [sys.executable, "-m", "tests.helpers_corpus_spy", str(tmp / SPY_LOG)]
    proc = spawn([*spied, "run", str(config)])
    out = finish(proc)
    proc.err_file.seek(0)
    (tmp / STDERR).write_text(proc.err_file.read())  # the run's log
    return config, tmp / "whole", out


def test_every_stage_runs_and_the_report_is_written(finished_run):
    config, run_dir, out = finished_run
    for stage in STAGES:
        assert manifest(run_dir, stage)["stage"] == stage
    assert (run_dir / "train_joint" / "cross_model").is_dir()
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert {"zero-shot", "bm25", "train_dual_0", "train_dual_2", "train_joint"} <= set(metrics)
    assert 0 <= metrics["train_joint"]["rerank_ndcg@10"] <= 1
    check_rerank_fusion(run_dir, metrics["train_joint"]["rerank_rrf_ndcg@10"], depth=5)
    report = (run_dir / "report.md").read_text()
    assert "train_dual_1" in report and (run_dir / "recall_at_k.png").is_file()
    # the re-ranking section reads evaluate's run files back: its means are evaluate's figures
    final = metrics["train_joint"]
    assert (
        f"| re-ranked | {final['ndcg@10']:.4f} | {final['rerank_ndcg@10']:.4f} | "
        f"{final['rerank_ndcg@10'] - final['ndcg@10']:+.4f} | ["
    ) in report
    assert "| stage" in out  # the CLI prints the table too
    assert not list(run_dir.glob(".*tmp*"))
    corpus_rows = read_manifest(run_dir / "prepare" / "corpus")["rows"]
    assert read_manifest(run_dir / "mine" / "embeddings")["rows"] == corpus_rows


def test_mine_draws_title_queries_that_train_cross_trains_on(finished_run):
    _, run_dir, _ = finished_run
    titles = read_table(run_dir / "mine" / "examples-titles").to_pylist()
    assert len(titles) == 6
    for row in titles:
        assert row["positives"] == [row["qid"].removeprefix("title-")]
        assert row["negatives"] and row["positives"][0] not in row["negatives"]
    inputs = manifest(run_dir, "train_cross")["basis"]["inputs"]
    assert inputs["titles"] == output_id(manifest(run_dir, "mine"))


def test_train_joint_trains_on_denoises_lists_then_augments_examples(finished_run):
    _, run_dir, _ = finished_run
    log = (run_dir.parent / STDERR).read_text()
    labelled = read_manifest(run_dir / "denoise" / "examples-joint-train")["rows"]
    augmented = read_manifest(run_dir / "augment" / "examples-augmented")["rows"]
    assert augmented > 0
    assert (f"train_joint trains on {labelled + augmented} examples: {labelled} labelled, then "
            f"{augmented} of augment's pseudo-labelled") in log  # fmt: skip
    inputs = manifest(run_dir, "train_joint")["basis"]["inputs"]
    assert inputs["augmented"] == output_id(manifest(run_dir, "augment"))


def test_evaluate_reuses_the_embeddings_mine_and_augment_made(finished_run, tiny_bert_dir):
    """The corpus is encoded once per model in the whole run: mine encodes it with
    train_dual_0's model, augment with train_dual_1's, evaluate only for the models no stage
    encoded it with, and for those two evaluate searches mine's and augment's tables, byte for
    byte what they wrote (tests/helpers_corpus_spy.py logged every encoding and search)."""
    _, run_dir, _ = finished_run
    spied = [json.loads(line) for line in (run_dir.parent / SPY_LOG).open()]
    encodes = [r for r in spied if r["event"] == "encode"]
    model_of = {run_dir / s / "model": s for s in STAGES} | {tiny_bert_dir: "base"}
    model_of = {path.resolve(): name for path, name in model_of.items()}
    assert sorted((r["stage"], model_of[Path(r["model"]).resolve()]) for r in encodes) == [
        ("augment", "train_dual_1"), ("evaluate", "base"), ("evaluate", "train_dual_2"),
        ("evaluate", "train_joint"), ("mine", "train_dual_0"),
    ]  # fmt: skip
    written = {r["stage"]: r["digest"] for r in encodes if r["stage"] in ("mine", "augment")}
    searched = {Path(r["queries"]).parent.name: r for r in spied if r["event"] == "search"}
    assert set(searched) == {"zero-shot", "train_dual_0", "train_dual_1", "train_dual_2",
                             "train_joint"}  # fmt: skip
    for model, producer in (("train_dual_0", "mine"), ("train_dual_1", "augment")):
        assert (
            Path(searched[model]["table"]).resolve()
            == (run_dir / producer / "embeddings").resolve()
        )
        assert searched[model]["digest"] == written[producer], model
        assert any(name.endswith(".parquet") for name in written[producer])


def test_training_curves_are_tensorboard_events_and_report_plots(finished_run):
    from matplotlib.image import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, _ = finished_run
    logged = [json.loads(x) for x in (run_dir / "train_dual_0" / "train_log.jsonl").open()]
    events = EventAccumulator(str(run_dir / "train_dual_0" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/examples_per_s"} <= set(events.Tags()["scalars"])
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["step"], pytest.approx(r["loss"])) for r in logged]
    report = (run_dir / "report.md").read_text()
    for stage in ("train_dual_0", "train_cross", "train_dual_1", "train_dual_2", "train_joint"):
        assert f"](loss-{stage}.png)" in report
        image = imread(run_dir / f"loss-{stage}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0


def test_every_model_folder_has_a_card_with_this_runs_numbers(finished_run):
    config, run_dir, _ = finished_run
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    card = (run_dir / "train_dual_1" / "model" / "README.md").read_text()
    assert "base_model: " + yaml.safe_load(config.read_text())["model"] in card
    assert '| loss | `"cross_batch"` |' in card and "SentenceTransformer(" in card
    assert f"| ndcg@10 | {metrics['train_dual_1']['ndcg@10']:.4f} |" in card
    cross = (run_dir / "train_joint" / "cross_model" / "README.md").read_text()
    assert "CrossEncoder(" in cross
    assert f"| rerank_ndcg@10 | {metrics['train_joint']['rerank_ndcg@10']:.4f} |" in cross


def test_rqa_report_rebuilds_the_report_from_the_run_folder(finished_run):
    _, run_dir, _ = finished_run
    before = (run_dir / "report.md").read_text()
    for name in ("report.md", "loss-train_cross.png", "recall_at_k.png"):
        (run_dir / name).unlink()
    finish(rqa("report", str(run_dir)))
    after = (run_dir / "report.md").read_text()
    assert table_cells(after) == [  # the same table; statuses now say the stages are done
        [("done" if cell == "ran" else cell) for cell in row] for row in table_cells(before)
    ]
    assert (run_dir / "loss-train_cross.png").is_file() and (run_dir / "recall_at_k.png").is_file()


def table_cells(markdown: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def check_rerank_fusion(run_dir: Path, reported: float, depth: int) -> None:
    """The reported fused nDCG@10 is RRF (1/(60 + rank), summed) of the retriever's top
    ``depth`` and the re-ranker's order of it, recomputed here from the written run files."""
    out = run_dir / "evaluate"
    retriever, reranked = (read_trec_run(out / f"run-{n}.trec") for n in ("train_joint", "rerank"))
    fused = {}
    for qid, scores in reranked.items():
        top = sorted(retriever[qid].items(), key=trec_key, reverse=True)
        assert {pid for pid, _ in top[:depth]} == set(scores)  # the same list, re-ordered
        by_ce = sorted(scores.items(), key=trec_key, reverse=True)
        fused[qid] = {pid: 1 / (60 + r) for r, (pid, _) in enumerate(top[:depth], 1)}
        for r, (pid, _) in enumerate(by_ce, 1):
            fused[qid][pid] += 1 / (60 + r)
    qrels = read_qrels(run_dir / "prepare" / "qrels-dev")
    assert reported == pytest.approx(evaluate(qrels, fused, ("ndcg@10",))["ndcg@10"])
    assert read_trec_run(out / "run-rerank-rrf.trec").keys() == fused.keys()


def test_evaluate_fuses_train_cross_reranker_with_the_final_one(finished_run):
    """fuse_train_cross: train_cross's model scores the very list train_joint's re-ranked
    (scored again here, pair by pair), and the reported fused nDCG@10 is the RRF of the
    retriever's order and both re-rankers' orders, written out."""
    _, run_dir, _ = finished_run
    out = run_dir / "evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    final, second = (read_trec_run(out / f"run-{n}.trec") for n in ("rerank", "rerank-train_cross"))
    assert {q: set(s) for q, s in second.items()} == {q: set(s) for q, s in final.items()}
    direct = {name: direct_logits(run_dir / folder, run_dir / "prepare", second)
              for name, folder in (("cross", "train_cross/model"),
                                   ("joint", "train_joint/cross_model"))}  # fmt: skip
    got = [second[q][p] for q in second for p in second[q]]
    assert got == pytest.approx(direct["cross"], abs=1e-6)
    assert got != pytest.approx(direct["joint"], abs=1e-6)  # the other model would show
    retriever = read_trec_run(out / "run-train_joint.trec")
    fused = {}
    for qid in final:
        top = sorted(retriever[qid].items(), key=trec_key, reverse=True)[:5]
        fused[qid] = {}
        for order in (top, *(sorted(r[qid].items(), key=trec_key, reverse=True)
                             for r in (final, second))):  # fmt: skip
            for rank, (pid, _) in enumerate(order, 1):
                fused[qid][pid] = fused[qid].get(pid, 0.0) + 1 / (60 + rank)
    qrels = read_qrels(run_dir / "prepare" / "qrels-dev")
    reported = metrics["train_joint"]
    assert reported["rerank_all_rrf_ndcg@10"] == pytest.approx(
        evaluate(qrels, fused, ("ndcg@10",))["ndcg@10"]
    )
    assert reported["rerank_train_cross_ndcg@10"] == pytest.approx(
        evaluate(qrels, second, ("ndcg@10",))["ndcg@10"]
    )
    assert read_trec_run(out / "run-rerank-all-rrf.trec").keys() == fused.keys()


def direct_logits(model_dir: Path, tables: Path, run: dict) -> list[float]:
    """The model's logits of each (query, passage) of ``run``, in its order, at the run's
    precision (bf16: the same values however the pairs are batched; the tiny models' logits
    differ from each other by less than bf16 differs from float32)."""
    passages = {r["pid"]: r for r in read_table(tables / "corpus").to_pylist()}
    queries = {r["qid"]: r["text"] for r in read_table(tables / "queries-dev").to_pylist()}
    pairs = [(q, p) for q in run for p in run[q]]
    logits = score_pairs(CrossEncoder.from_pretrained(model_dir), [queries[q] for q, _ in pairs],
                         [passages[p]["title"] for _, p in pairs],
                         [passages[p]["text"] for _, p in pairs], show_progress=False,
                         precision="bf16")  # fmt: skip
    return [float(x) for x in logits]


def trec_key(item: tuple[str, float]) -> tuple[float, str]:
    """Sorted with reverse=True: score descending, then docid descending (trec_eval's order)."""
    return item[1], item[0]


@pytest.mark.slow
def test_second_run_does_no_work(finished_run):
    config, run_dir, _ = finished_run
    before = {s: manifest(run_dir, s)["fingerprint"] for s in STAGES}
    mtimes = {s: (run_dir / s / "_manifest.json").stat().st_mtime_ns for s in STAGES}
    finish(rqa("run", str(config)))
    after = {s: (run_dir / s / "_manifest.json").stat().st_mtime_ns for s in STAGES}
    assert after == mtimes
    assert before == {s: manifest(run_dir, s)["fingerprint"] for s in STAGES}


@pytest.mark.slow
def test_only_and_force_rerun_just_that_stage(finished_run):
    config, run_dir, _ = finished_run
    mtimes = {s: (run_dir / s / "_manifest.json").stat().st_mtime_ns for s in STAGES}
    finish(rqa("run", str(config), "--only", "denoise", "--force", "denoise"))
    changed = {s for s in STAGES
               if (run_dir / s / "_manifest.json").stat().st_mtime_ns != mtimes[s]}  # fmt: skip
    assert changed == {"denoise"}


def test_bad_config_is_one_line_before_any_work(tmp_path, tiny_bert_dir, scifact_dir):
    path = tiny_config(tmp_path, "bad", tiny_bert_dir, scifact_dir)
    raw = yaml.safe_load(path.read_text())
    raw["stages"]["mine"]["dept"] = 3
    path.write_text(yaml.safe_dump(raw))
    proc = rqa("run", str(path))
    proc.wait(timeout=120)
    proc.err_file.seek(0)
    err = proc.err_file.read()
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "stages.mine.dept" in err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="key 'stages.train_cross.train.los'"):
        raw["stages"].pop("mine")
        raw["stages"]["train_cross"]["train"]["los"] = "x"
        path.write_text(yaml.safe_dump(raw))
        load_pipeline_config(path)


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_results(finished_run, tmp_path, tiny_bert_dir,
                                                 scifact_dir):  # fmt: skip
    _, whole_dir, _ = finished_run
    config = tiny_config(tmp_path, "crashed", tiny_bert_dir, scifact_dir, mine_actors=0)
    run_dir = tmp_path / "crashed"
    proc = rqa("run", str(config))
    deadline = time.time() + 600
    while not list((run_dir / ".work").glob("train_cross-*/checkpoints/latest")):
        assert proc.poll() is None, "the run ended before train_cross checkpointed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / "mine" / "_manifest.json").is_file()
    assert not (run_dir / "train_cross").exists()
    restarted = rqa("run", str(config))
    finish(restarted)
    restarted.err_file.seek(0)
    assert "train_cross" in (log := restarted.err_file.read()) and "resumes from step" in log
    summary = json.loads((run_dir / "train_cross" / "train_summary.json").read_text())
    assert summary["resumed_from"] >= 2
    ours = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    theirs = json.loads((whole_dir / "evaluate" / "metrics.json").read_text())
    assert ours.keys() == theirs.keys()
    for name in ours:
        for metric, value in theirs[name].items():
            assert ours[name][metric] == pytest.approx(value, abs=1e-6), (name, metric)
