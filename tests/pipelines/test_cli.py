"""The `rqa` command line as a user types it: in-process through ``pipelines.cli.main``, and
once through the installed console script.

Results are checked against references computed here: a numpy brute-force search over the
embeddings, TREC run files parsed by hand, and pytrec_eval for the metrics.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval

from pipelines.cli import main
from retrieval.encoding import encode_queries
from retrieval.models import DualEncoder
from retrieval.tables import read_table
from tests.conftest import minilm_path
from tests.helpers_data import (
    MSMARCO_QRELS,
    MSMARCO_QUERIES,
    break_corpus_line,
    expected_number,
    write_msmarco_files,
    write_scifact_slice,
)

REPO = Path(__file__).resolve().parents[2]
RQA = Path(sys.executable).parent / "rqa"  # the console script of the venv running the tests
DEFAULT_METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]


def rqa(*args) -> int:
    """Run one `rqa` command in-process; returns its exit code."""
    return main([str(arg) for arg in args])


def read_run_file(path: Path) -> dict[str, list[tuple[int, str, float]]]:
    """A TREC run file, parsed here: ``{qid: [(rank, pid, score), ...]}`` in file order."""
    run: dict[str, list[tuple[int, str, float]]] = {}
    for line in path.read_text().splitlines():
        qid, q0, pid, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and tag == "rqa"
        run.setdefault(qid, []).append((int(rank), pid, float(score)))
    return run


@pytest.fixture(scope="module")
def beir(scifact_dir, tmp_path_factory) -> Path:
    """A raw BEIR folder: ~200 SciFact docs and the dev queries judged on them."""
    return write_scifact_slice(scifact_dir, tmp_path_factory.mktemp("scifact") / "beir")


def test_prepare_encode_index_search(tiny_bert_dir, beir, tmp_path, capsys):
    tables, embeddings = tmp_path / "T", tmp_path / "E"
    index, candidates, run_file = tmp_path / "I", tmp_path / "C", tmp_path / "run.trec"

    assert rqa("prepare", "beir", "--dir", beir, "--out", tables) == 0
    encode = ["--model", tiny_bert_dir, "--corpus", tables / "corpus"]
    assert rqa("encode", *encode, "--out", embeddings) == 0
    assert rqa("index", "--embeddings", embeddings, "--out", index) == 0
    search = ["--model", tiny_bert_dir, "--index", index, "--queries", tables / "queries-dev"]
    assert rqa("search", *search, "--out", candidates, "--run-file", run_file) == 0

    printed = capsys.readouterr().out
    queries = read_table(tables / "queries-dev")
    assert re.search(rf"queries-dev\s+{len(queries)} rows", printed)
    assert f"wrote top-100 candidates of {len(queries)} queries" in printed
    found = read_table(candidates)
    assert found["qid"].to_pylist() == queries["qid"].to_pylist()

    # The candidates table and the TREC run file hold the same ranked lists. Equal scores (a
    # random tiny model has a few) are ordered by row in the table, by docid descending in the
    # run file as trec_eval ranks them.
    run = read_run_file(run_file)
    assert list(run) == found["qid"].to_pylist()
    for qid, pids, scores in zip(*(found[c].to_pylist() for c in ("qid", "pids", "scores"))):
        assert len(pids) == len(set(pids)) == 100
        assert scores == sorted(scores, reverse=True)
        score_of = dict(zip(pids, scores))
        assert {pid: score for _, pid, score in run[qid]} == score_of
        assert [rank for rank, _, _ in run[qid]] == list(range(1, 101))
        trec_order = sorted(pids, key=lambda pid: (score_of[pid], pid), reverse=True)
        assert [pid for _, pid, _ in run[qid]] == trec_order

    # ... and their top 10 is a brute-force search over the embeddings table.
    table = read_table(embeddings)
    corpus_pids = table["pid"].to_pylist()
    assert corpus_pids == read_table(tables / "corpus")["pid"].to_pylist()
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    model = DualEncoder.from_pretrained(tiny_bert_dir)
    query_vectors = encode_queries(model, queries["text"].to_pylist(), show_progress=False)
    all_scores = query_vectors @ vectors.T
    best = np.argsort(-all_scores, axis=1, kind="stable")[:, :10]
    row_of = {pid: row for row, pid in enumerate(corpus_pids)}
    for q, (pids, scores) in enumerate(zip(found["pids"].to_pylist(), found["scores"].to_pylist())):
        expected = [corpus_pids[row] for row in best[q]]
        np.testing.assert_allclose(scores[:10], all_scores[q, best[q]], atol=1e-5)
        for rank, (got, want) in enumerate(zip(pids[:10], expected)):
            if got != want:  # allowed only for a tie (to float precision) with the expected pid
                tie = abs(all_scores[q, row_of[got]] - all_scores[q, row_of[want]])
                assert tie <= 1e-5, (q, rank, got, want)


def test_evaluate_beir_prints_a_table_and_writes_json(tiny_bert_dir, beir, tmp_path, capsys):
    output = tmp_path / "results" / "metrics.json"  # its folder does not exist yet

    inputs = ["--beir", beir, "--split", "dev", "--metrics", "map", "ndcg@100"]
    code = rqa("evaluate", "--model", tiny_bert_dir, *inputs, "--output", output)

    assert code == 0
    metrics = json.loads(output.read_text())
    names = [*DEFAULT_METRICS, "map", "ndcg@100"]
    assert set(names) <= set(metrics)
    assert metrics["split"] == "dev"
    printed = capsys.readouterr().out
    for name in names:
        assert 0 < metrics[name] <= 1
        assert re.search(rf"\| {re.escape(name)} +\| +{metrics[name]:.4f} \|", printed), name

    # The same evaluation from tables prepared beforehand gives the same numbers.
    assert rqa("prepare", "beir", "--dir", beir, "--out", tmp_path / "T") == 0
    again_file = tmp_path / "again.json"
    args = ["--split", "dev", "--output", again_file, "--metrics", "map", "ndcg@100"]
    assert rqa("evaluate", "--model", tiny_bert_dir, "--tables", tmp_path / "T", *args) == 0
    again = json.loads(again_file.read_text())
    assert {name: again[name] for name in names} == {name: metrics[name] for name in names}


def test_evaluate_msmarco_files(tiny_bert_dir, fixtures_dir, tmp_path):
    raw = fixtures_dir / "msmarco_passage_toy_splade" / "full_collection" / "raw.tsv"
    collection, queries, qrels_file = write_msmarco_files(raw, tmp_path / "marco")
    output, run_file = tmp_path / "m.json", tmp_path / "run.trec"

    inputs = ["--corpus", collection, "--queries", queries, "--qrels", qrels_file, "--split", "dev"]
    code = rqa(
        "evaluate", "--model", tiny_bert_dir, *inputs, "--output", output, "--run-file", run_file
    )

    assert code == 0
    metrics = json.loads(output.read_text())
    run = {
        qid: {pid: score for _, pid, score in rows} for qid, rows in read_run_file(run_file).items()
    }
    assert set(run) == set(MSMARCO_QUERIES)
    assert all(len(scores) == 89 for scores in run.values())  # all 89 passages; k=100 is deeper
    qrels: dict[str, dict[str, int]] = {}
    for qid, pid, rel in MSMARCO_QRELS:
        qrels.setdefault(qid, {})[pid] = rel
    measures = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(measures.values())).evaluate(run)
    assert len(per_query) == len(MSMARCO_QUERIES)
    for name, measure in measures.items():
        expected = np.mean([row[measure] for row in per_query.values()])
        assert metrics[name] == pytest.approx(expected, abs=1e-9), name
    assert metrics["recall@100"] == 1.0


def test_broken_corpus_line_through_the_console_script(tiny_bert_dir, beir, tmp_path):
    broken = break_corpus_line(beir, tmp_path / "broken", lineno=5)
    output = tmp_path / "out" / "metrics.json"

    done = subprocess.run(
        [RQA, "evaluate", "--model", tiny_bert_dir, "--beir", broken, "--split", "dev"]
        + ["--output", output],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        f"rqa evaluate: error: {broken / 'corpus.jsonl'}:5: field 'text': "
        "expected a string, got int"
    )
    assert not (tmp_path / "out").exists()


def test_broken_corpus_line_leaves_no_tables(beir, tmp_path, capsys):
    broken = break_corpus_line(beir, tmp_path / "broken", lineno=5)

    code = rqa("prepare", "beir", "--dir", broken, "--out", tmp_path / "new" / "T")

    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "corpus.jsonl:5: field 'text'" in err
    assert not (tmp_path / "new").exists()  # neither the tables nor the folder made for them


MISSING_INPUTS = {
    "no inputs named": (["evaluate", "--model", "{model}", "--split", "dev"], "name the inputs"),
    "missing BEIR folder": (
        ["evaluate", "--model", "{model}", "--beir", "{tmp}/nowhere"],
        "nowhere/queries.jsonl: file not found",
    ),
    "split without qrels": (
        ["evaluate", "--model", "{model}", "--beir", "{beir}", "--split", "test"],
        "qrels/test.tsv: file not found",
    ),
    "missing model": (
        ["evaluate", "--model", "{tmp}/no-model", "--beir", "{beir}", "--split", "dev"],
        "no-model: no such model folder",
    ),
    "unknown metric": (
        ["evaluate", "--model", "{model}", "--beir", "{beir}", "--metrics", "ndcg@0"],
        "unknown metric 'ndcg@0'",
    ),
    "missing corpus table": (
        ["encode", "--model", "{model}", "--corpus", "{tmp}/nowhere", "--out", "{tmp}/E"],
        "nowhere: no table here",
    ),
    "missing embeddings": (
        ["index", "--embeddings", "{tmp}/nowhere", "--out", "{tmp}/I"],
        "nowhere: no table here",
    ),
    "missing index": (
        ["search", "--model", "{model}", "--index", "{tmp}/nowhere"]
        + ["--queries", "{tmp}/q", "--out", "{tmp}/C"],
        "nowhere: not a saved FaissIndex",
    ),
}


@pytest.mark.parametrize("case", MISSING_INPUTS)
def test_missing_inputs_are_one_line_errors(tiny_bert_dir, beir, tmp_path, capsys, case):
    argv, message = MISSING_INPUTS[case]
    work = tmp_path / "work"
    work.mkdir()
    places = {"model": tiny_bert_dir, "beir": beir, "tmp": work}
    argv = [arg.format(**places) for arg in argv]
    if argv[0] == "evaluate":
        argv += ["--output", f"{work}/metrics.json"]

    code = main(argv)

    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"rqa {argv[0]}: error: ") and message in err
    assert list(work.iterdir()) == []  # nothing written


def make_recipe(target: str) -> str:
    """The recipe of a Makefile target, its lines joined as the shell reads them."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().removesuffix("\\"))
    return " ".join(recipe)


@pytest.mark.slow
def test_make_zero_shot_minilm_on_scifact_dev(full_scifact_dir, tmp_path):
    """`make zero-shot`: the command of its recipe in the Makefile, with the Makefile's model
    (all-MiniLM-L6-v2) and SciFact and the output in tmp_path, reaches the nDCG@10 on SciFact
    dev that tests/data/expected_numbers.yaml keeps with its source (~3 min)."""
    command = make_recipe("zero-shot")
    for name, value in (("$(BIN)/rqa", "rqa"), ('"$(MINILM)"', shlex.quote(str(minilm_path()))),
                        ("$(SCIFACT)", shlex.quote(str(full_scifact_dir)))):  # fmt: skip
        assert name in command, (name, command)
        command = command.replace(name, value)
    argv = shlex.split(command)
    assert argv[:2] == ["rqa", "evaluate"] and "$" not in command, command
    output = argv.index("--output") + 1
    argv[output] = str(tmp_path / Path(argv[output]).name)  # not into the checkout's runs/

    assert rqa(*argv[1:]) == 0

    recorded = expected_number("scifact_dev_minilm_zero_shot_ndcg10")
    ndcg = json.loads(Path(argv[output]).read_text())["ndcg@10"]
    assert ndcg == pytest.approx(recorded["value"], abs=recorded["tolerance"])
