"""`rqa evaluate --run`: any TREC run file scored against qrels, checked against pytrec_eval.

pytrec_eval averages over the queries it finds in both files; `rqa` (as trec_eval -c) counts a
judged query the run lacks as 0, so the reference mean here divides by every judged query.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import pytrec_eval

from pipelines.cli import main
from retrieval.metrics.significance import compare_per_query

# our name -> pytrec_eval's; every run here has fewer than 10 docs a query, so recip_rank is MRR@10
PYTREC = {
    "ndcg@10": "ndcg_cut_10",
    "mrr@10": "recip_rank",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "map": "map",
    "ndcg@5": "ndcg_cut_5",
    "precision@5": "P_5",
}
DOCS = [f"doc{i}" for i in range(30)]


def rqa(*args) -> int:
    return main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Graded qrels for 12 queries (one with no relevant doc) in TREC and BEIR layouts, and a run
    with random scores and ties that leaves out 2 judged queries and holds 1 unjudged one."""
    rng = random.Random(7)
    qrels = {f"q{i}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(DOCS, 4)} for i in range(12)}
    qrels["q11"] = {d: 0 for d in DOCS[:3]}  # nothing relevant: not counted by either
    run = {
        q: {d: float(rng.randint(0, 5)) for d in rng.sample(DOCS, 8)}  # integer scores: ties
        for q in [*[f"q{i}" for i in range(2, 12)], "q-unjudged"]
    }
    folder = tmp_path_factory.mktemp("evaluate-run")
    lines = [f"{q} 0 {d} {r}" for q, judged in qrels.items() for d, r in judged.items()]
    (folder / "qrels.txt").write_text("\n".join(lines) + "\n")
    beir = folder / "beir"
    (beir / "qrels").mkdir(parents=True)
    rows = [f"{q}\t{d}\t{r}" for q, judged in qrels.items() for d, r in judged.items()]
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows))
    ranked = []
    for q, scores in run.items():
        order = sorted(scores, key=lambda d: (scores[d], d), reverse=True)
        ranked += [f"{q} Q0 {d} {i} {scores[d]} test" for i, d in enumerate(order, 1)]
    (folder / "run.trec").write_text("\n".join(ranked) + "\n")
    return {
        "folder": folder,
        "qrels": folder / "qrels.txt",
        "beir": beir,
        "run": folder / "run.trec",
        "qrels_dict": qrels,
        "run_dict": run,
    }


def pytrec_means(qrels: dict, run: dict) -> dict[str, float]:
    measures = {"ndcg_cut.5,10", "recip_rank", "recall.10,100", "map", "P.5"}
    found = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    return {
        ours: sum(found.get(q, {}).get(theirs, 0.0) for q in judged) / len(judged)
        for ours, theirs in PYTREC.items()
    }


@pytest.mark.parametrize("qrels_from", ["trec", "beir", "beir-tsv"])
def test_scores_equal_pytrec_eval(files, tmp_path, capsys, qrels_from):
    output = tmp_path / "metrics.json"
    source = {
        "trec": ("--qrels", files["qrels"]),
        "beir": ("--beir", files["beir"]),  # its qrels/test.tsv (--split test, the default)
        "beir-tsv": ("--qrels", files["beir"] / "qrels" / "test.tsv"),
    }[qrels_from]

    code = rqa("evaluate", "--run", files["run"], *source, "--metrics", "map", "ndcg@5",
               "precision@5", "--output", output)  # fmt: skip

    assert code == 0
    got = json.loads(output.read_text())
    expected = pytrec_means(files["qrels_dict"], files["run_dict"])
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got["queries"] == 11 and got["run"] == str(files["run"])
    printed = capsys.readouterr().out
    assert f"| ndcg@10     | {expected['ndcg@10']:7.4f} |" in printed


def test_tables_split_gives_the_same_numbers(files, tmp_path):
    """Qrels from a prepared tables folder (prepared here from a BEIR folder with texts)."""
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "dev.tsv").write_bytes((files["beir"] / "qrels" / "test.tsv").read_bytes())
    corpus = [json.dumps({"_id": d, "text": f"text of {d}"}) for d in DOCS]
    (beir / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    queries = [json.dumps({"_id": q, "text": f"query {q}"}) for q in files["qrels_dict"]]
    (beir / "queries.jsonl").write_text("\n".join(queries) + "\n")
    assert rqa("prepare", "beir", "--dir", beir, "--out", tmp_path / "T") == 0

    code = rqa("evaluate", "--run", files["run"], "--tables", tmp_path / "T", "--split", "dev",
               "--output", tmp_path / "m.json")  # fmt: skip

    assert code == 0
    got = json.loads((tmp_path / "m.json").read_text())
    expected = pytrec_means(files["qrels_dict"], files["run_dict"])
    assert got["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    assert got["recall@100"] == pytest.approx(expected["recall@100"], abs=1e-12)


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong split", "no query of the run is judged in"),
        ("no qrels", "--run needs qrels"),
        ("missing run", "no-run.trec: file not found"),
        ("bad run line", "run.trec:1: expected 6 fields"),
        ("bad metric", "unknown metric 'ndcg@0'"),
        ("with a model", "not allowed with argument"),
    ],
)
def test_errors_are_one_line(files, tmp_path, capsys, case, message):
    run = files["run"]
    if case == "bad run line":
        run = tmp_path / "run.trec"
        run.write_text("q1 Q0 doc1 1 2.0\n")
    if case == "missing run":
        run = tmp_path / "no-run.trec"
    args = ["evaluate", "--run", run, "--qrels", files["qrels"]]
    if case == "wrong split":
        other = tmp_path / "other.txt"
        other.write_text("x1 0 doc1 1\n")
        args = ["evaluate", "--run", run, "--qrels", other]
    if case == "no qrels":
        args = args[:3]
    if case == "bad metric":
        args += ["--metrics", "ndcg@0"]
    if case == "with a model":
        args += ["--model", "m"]

    try:
        code = rqa(*args, "--output", tmp_path / "m.json")
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code

    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    if case != "with a model":
        assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.json").exists()


def test_compare_tests_each_run_against_the_first(files, tmp_path, capsys):
    """`--compare`: every metric's means, paired difference, interval and p-value, from per-query
    values that pytrec_eval gives independently; a run compared with itself differs by nothing."""
    rng = random.Random(11)
    other = {q: {d: s + rng.uniform(-2, 2) for d, s in scores.items()}
             for q, scores in files["run_dict"].items()}  # fmt: skip
    lines = [f"{q} Q0 {d} 0 {s} other" for q, scores in other.items() for d, s in scores.items()]
    (tmp_path / "other.trec").write_text("\n".join(lines) + "\n")
    output = tmp_path / "m.json"

    code = rqa("evaluate", "--run", files["run"], "--qrels", files["qrels"], "--compare",
               tmp_path / "other.trec", files["run"], "--output", output)  # fmt: skip

    assert code == 0
    compared = json.loads(output.read_text())["compared"]
    judged = [q for q, rels in files["qrels_dict"].items() if any(r > 0 for r in rels.values())]
    evaluator = pytrec_eval.RelevanceEvaluator(files["qrels_dict"], {"ndcg_cut.10"})

    def ndcg(run):
        found = evaluator.evaluate(run)
        return {q: {"ndcg@10": found.get(q, {}).get("ndcg_cut_10", 0.0)} for q in judged}

    reference = compare_per_query(ndcg(files["run_dict"]), ndcg(other), "ndcg@10")
    row = next(r for r in compared[str(tmp_path / "other.trec")] if r["metric"] == "ndcg@10")
    for key in ("mean_a", "mean_b", "difference", "ci_low", "ci_high", "p_value"):
        assert row[key] == pytest.approx(getattr(reference, key), abs=1e-12), key
    assert (row["better"], row["worse"], row["queries"]) == (
        reference.better, reference.worse, len(judged))  # fmt: skip
    assert reference.better + reference.worse > 0  # the shuffled run does differ
    same = compared[str(files["run"])]
    assert all(r["difference"] == 0 and r["p_value"] == 1 for r in same)
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'other.trec'} against {files['run']} ({len(judged)} queries)" in printed
    assert f"| ndcg@10 | {reference.mean_a:.4f} | {reference.mean_b:.4f} |" in printed


@pytest.mark.parametrize(
    "args, message",
    [(["--compare", "nothing.trec"], "--compare nothing.trec: file not found"),
     (["--model", "m", "--compare", "x.trec"], "give --run too")],
)  # fmt: skip
def test_compare_errors_are_one_line(files, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    base = ["evaluate", "--qrels", files["qrels"], "--output", tmp_path / "m.json"]
    base += [] if "--model" in args else ["--run", files["run"]]

    code = rqa(*base, *args)

    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.json").exists()
