"""`rqa prepare msmarco` / `rqa prepare nq` on files in the datasets' own formats, then `rqa run`
of the shipped configs/msmarco.yaml and configs/nq.yaml scaled down (tiny model, two steps a
stage, local launcher, small depths) to the end: the metrics each dataset is reported with,
the report's columns, and for NQ that no mined or BM25 negative holds an answer.

The files, built from the excerpts in tests/data/fixtures (README.md there): MS MARCO's
collection.tsv / queries / qrels layouts holding genuine MS MARCO text (SPLADE's copies of the
collection head and the triples.train.small head) plus the SciFact excerpt's passages, 654 in
all (fewer than the configs' k of 1000 since SciFact comes from its 419-passage excerpt); NQ's
psgs_w100.tsv rebuilt from the excerpt of DPR's biencoder sample, that excerpt as the train file
and the head of the real nq-dev.qa.csv (from its excerpt).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytrec_eval
import yaml

from pipelines.config import load_pipeline_config
from pipelines.stages.context import StageContext
from pipelines.stages.negatives import with_negatives
from pipelines.stages.training import bm25_examples
from retrieval.answers_match import contains_answer
from retrieval.metrics.answers import has_answer as dpr_has_answer
from retrieval.tables import read_table
from retrieval.tables.labels import body_texts, read_answers
from retrieval.training.examples import load_examples
from tests.helpers_cli import finish, rqa

pytestmark = [pytest.mark.slow]


REPO = Path(__file__).resolve().parents[2]
TRAIN = {"max_steps": 2, "batch_size": 4, "launcher": "local", "checkpoint_every": 2,
         "log_every": 1}  # fmt: skip
RECIPE = ("loss", "group_size", "hard_negatives", "random_negatives")  # kept from the config
# a random re-ranker is unsure of everything: loose thresholds keep the lists non-empty
RANDOM_RERANKER = {"negative_below": 0.9, "positive_above": 0.99, "undenoised": 2}


def scaled_down(name: str, tmp_path: Path, model: Path, tables: Path, stages: dict) -> Path:
    """The shipped config ``name`` with a tiny model, local Ray, two training steps a stage
    and ``stages`` merged over its stage sections; everything else as shipped."""
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    raw.pop("ray")  # local Ray, not `address: auto`
    raw.update(name=name, run_dir=str(tmp_path / name), model=str(model))
    raw["model_settings"].update(query_max_len=24, passage_max_len=48)
    raw["data"]["tables"] = str(tables)
    for section in raw["stages"].values():
        if "train" in section:  # the stage's recipe stays, the cluster's scale goes
            recipe = {k: v for k, v in section["train"].items() if k in RECIPE}
            section["train"] = {**recipe, **TRAIN}
        for key in ("actors", "gpus_per_actor", "cpus_per_actor"):  # GPU actors: in the driver
            section.pop(key, None)
    for stage, override in stages.items():
        section = raw["stages"].setdefault(stage, {})
        if "train" in override:
            section["train"].update(override.pop("train"))
        section.update(override)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def header(report: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith("| stage"))
    return [cell.strip() for cell in line.strip("|").split("|")]


# --- MS MARCO -------------------------------------------------------------------------------


def msmarco_files(folder: Path, fixtures: Path, scifact: Path) -> dict[str, Path]:
    """collection.tsv (pid<TAB>passage), queries.SPLIT.tsv (qid<TAB>text) and qrels.SPLIT.tsv
    (qid<TAB>0<TAB>pid<TAB>1): 70 triples' queries train, 30 dev, each judged on its positive."""
    toy = fixtures / "msmarco_passage_toy_splade"
    lines = (toy / "full_collection" / "raw.tsv").read_text(encoding="utf-8").splitlines()
    collection = [line.split("\t", 1) for line in lines]  # genuine pids 0-99
    triples = [line.split("\t") for line in (toy / "triplets" / "raw.tsv").read_text(
        encoding="utf-8").splitlines()]  # fmt: skip
    pid_of: dict[str, str] = {}
    for _, positive, negative in triples:
        for text in (positive, negative):
            if text not in pid_of:
                pid_of[text] = str(7_000_000 + len(pid_of))
                collection.append([pid_of[text], text])
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as docs:
        for i, line in zip(range(1000), docs):  # SciFact text as MS MARCO-sized passages
            doc = json.loads(line)
            words = f"{doc['title']}. {doc['text']}".split()[:80]
            collection.append([str(8_000_000 + i), " ".join(words)])
    files = {"collection": folder / "collection.tsv"}
    files["collection"].write_text("".join(f"{p}\t{t}\n" for p, t in collection), "utf-8")
    for split, rows in (("train", triples[:70]), ("dev", triples[70:])):
        base = 1000 if split == "train" else 2000
        qids = [str(base + i) for i in range(len(rows))]
        files[f"queries-{split}"] = folder / f"queries.{split}.tsv"
        files[f"queries-{split}"].write_text(
            "".join(f"{q}\t{r[0]}\n" for q, r in zip(qids, rows)), "utf-8"
        )
        files[f"qrels-{split}"] = folder / f"qrels.{split}.tsv"
        files[f"qrels-{split}"].write_text(
            "".join(f"{q}\t0\t{pid_of[r[1]]}\t1\n" for q, r in zip(qids, rows)), "utf-8"
        )
    files["unlabeled"] = folder / "unlabeled_queries.txt"  # augment's source, as in the config
    files["unlabeled"].write_text("".join(f"{r[0]}\n" for r in triples[60:70]), "utf-8")
    return files


@pytest.fixture(scope="module")
def msmarco_run(tmp_path_factory, fixtures_dir, scifact_dir, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("msmarco")
    files = msmarco_files(tmp, fixtures_dir, scifact_dir)
    finish(rqa("prepare", "msmarco", "--collection", str(files["collection"]),
               "--queries", f"train={files['queries-train']}",
               "--queries", f"dev={files['queries-dev']}",
               "--qrels", f"train={files['qrels-train']}", "--qrels", f"dev={files['qrels-dev']}",
               "--out", str(tmp / "tables")))  # fmt: skip
    config = scaled_down("msmarco", tmp, tiny_bert_dir, tmp / "tables", {
        "mine": {"depth": 10, "negatives": 4},
        "denoise": dict(RANDOM_RERANKER),
        "augment": {"queries_file": str(files["unlabeled"]), "depth": 5, "mode": "relative",
                    "margin": 0.0},
        "train_cross": {"train": {"cross_max_len": 64}},
        "train_joint": {"train": {"group_size": 3, "cross_max_len": 64}},
        "evaluate": {"rerank_depth": 10},
    })  # fmt: skip
    load_pipeline_config(config)  # the load-time checks pass
    finish(rqa("run", str(config)))
    return tmp / "msmarco"


def read_run_file(path: Path) -> dict[str, dict[str, float]]:
    """A TREC run file (qid Q0 pid rank score tag), parsed here: ``{qid: {pid: score}}``."""
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, pid, _, score, _ = line.split()
        run.setdefault(qid, {})[pid] = float(score)
    return run


def read_qrels_file(path: Path) -> dict[str, dict[str, int]]:
    """MS MARCO's qrels.SPLIT.tsv (qid<TAB>0<TAB>pid<TAB>relevance): ``{qid: {pid: rel}}``."""
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, pid, rel = line.split("\t")
        qrels.setdefault(qid, {})[pid] = int(rel)
    return qrels


RECALL_CUTOFFS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)  # the evaluate stage's, up to k 1000


def trec_eval_metrics(qrels: dict, run: dict) -> tuple[dict[str, float], float]:
    """The evaluate stage's metrics by pytrec_eval (trec_eval), averaged over the queries, and
    the MRR of the whole run; MRR@10 is trec_eval's recip_rank over each query's first 10 in
    trec_eval's order (score descending, then docid descending)."""
    recall = "recall." + ",".join(map(str, RECALL_CUTOFFS))
    measures = {recall, "ndcg_cut.10", "recip_rank"}
    whole = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top_10 = {
        qid: dict(sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)[:10])
        for qid, scores in run.items()
    }
    first = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top_10)
    assert whole.keys() == first.keys() == qrels.keys()  # every judged query was searched

    def mean(rows: dict, measure: str) -> float:
        return sum(row[measure] for row in rows.values()) / len(rows)

    metrics = {"ndcg@10": mean(whole, "ndcg_cut_10"), "mrr@10": mean(first, "recip_rank")}
    metrics.update({f"recall@{k}": mean(whole, f"recall_{k}") for k in RECALL_CUTOFFS})
    return metrics, mean(whole, "recip_rank")


def report_rows(report: str) -> dict[str, dict[str, str]]:
    """The report's stage table: ``{stage: {column: cell}}``."""
    columns = header(report)
    rows = [line for line in report.splitlines() if line.startswith("| ")][2:]
    cells = ([c.strip() for c in line.strip("|").split("|")] for line in rows)
    return {row[0]: dict(zip(columns, row)) for row in cells}


def test_msmarco_runs_to_the_end_with_mrr_and_recall_at_1000(msmarco_run):
    """Every metric the run reports (metrics.json, and the report's MRR@10, R@50 and R@1000
    columns) is pytrec_eval's on the run file evaluate wrote and the dev qrels file."""
    metrics = json.loads((msmarco_run / "evaluate" / "metrics.json").read_text())
    stages = {"train_dual_0", "train_dual_1", "train_dual_2", "train_joint"}
    assert set(metrics) == stages  # no bm25 and no zero-shot row: the config turns them off
    qrels = read_qrels_file(msmarco_run.parent / "qrels.dev.tsv")
    assert len(qrels) == 30
    rows = report_rows((msmarco_run / "report.md").read_text())
    passages = len((msmarco_run.parent / "collection.tsv").read_text(encoding="utf-8").splitlines())
    uncut = {}  # MRR over the whole run: what an MRR@10 that missed its cut would say
    for name, values in metrics.items():
        run = read_run_file(msmarco_run / "evaluate" / f"run-{name}.trec")
        assert all(len(scores) == min(1000, passages) for scores in run.values())  # k 1000
        expected, uncut[name] = trec_eval_metrics(qrels, run)
        if name == "train_joint":  # the final re-ranker over its top 10, alone and fused
            for key, file in (("rerank_ndcg@10", "rerank"), ("rerank_rrf_ndcg@10", "rerank-rrf")):
                reranked = read_run_file(msmarco_run / "evaluate" / f"run-{file}.trec")
                assert all(len(scores) == 10 for scores in reranked.values())
                per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(
                    reranked
                )
                assert per_query.keys() == qrels.keys()
                expected[key] = sum(r["ndcg_cut_10"] for r in per_query.values()) / len(qrels)
        assert values.keys() == expected.keys(), name
        for key, value in expected.items():
            assert values[key] == pytest.approx(value, abs=1e-9), (name, key)
        for column, key in (("MRR@10", "mrr@10"), ("R@50", "recall@50"), ("R@1000", "recall@1000")):
            assert rows[name][column] == f"{expected[key]:.3f}", (name, column)
    # The tiny random model ranks few positives (on CPUs where "auto" is bf16, none) in a top
    # 10, most in the top 1000: an MRR@10 or a recall that missed its cut would show.
    assert any(uncut[name] > values["mrr@10"] for name, values in metrics.items())
    assert any(values["recall@1000"] > values["recall@50"] for values in metrics.values())
    assert not [
        c for c in header((msmarco_run / "report.md").read_text()) if c.startswith("answer")
    ]
    assert (msmarco_run / "recall_at_k.png").is_file()
    augmented = read_table(msmarco_run / "augment" / "queries-augmented")
    assert augmented.num_rows == 10  # the unlabeled queries file was read


# --- NQ -------------------------------------------------------------------------------------


def nq_files(folder: Path, fixtures: Path) -> dict[str, Path]:
    """psgs_w100.tsv (id<TAB>text<TAB>title, text quoted as in DPR's file) of every passage in
    DPR's biencoder excerpt; that excerpt with one gold positive a question (the others stay
    in the corpus: answer-bearing passages a negative must not be); the qa.csv head."""
    sample = fixtures / "nq_dpr_biencoder_sample" / "nq-biencoder-dev.sample5.excerpt.json"
    records = json.loads(sample.read_text(encoding="utf-8"))
    passages: dict[str, tuple[str, str]] = {}
    for record in records:
        for key in ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs"):
            for ctx in record[key]:
                passages.setdefault(ctx["passage_id"], (ctx["text"], ctx["title"]))
    files = {"passages": folder / "psgs_w100.tsv", "biencoder": folder / "biencoder-train.json"}
    with files["passages"].open("w", encoding="utf-8") as out:
        out.write("id\ttext\ttitle\n")
        for pid, (text, title) in passages.items():
            quoted = '"' + text.replace('"', '""') + '"'
            title = '"' + title.replace('"', '""') + '"' if '"' in title else title
            out.write(f"{pid}\t{quoted}\t{title}\n")
    for record in records:
        record["positive_ctxs"] = record["positive_ctxs"][:1]
    files["biencoder"].write_text(json.dumps(records), encoding="utf-8")
    qa = (fixtures / "nq_dpr_qa" / "nq-dev.qa.excerpt.csv").read_bytes().split(b"\r\n")
    files["qa"] = folder / "nq-dev-head.qa.csv"
    files["qa"].write_bytes(b"\r\n".join(qa[:20]) + b"\r\n")  # CRLF, as DPR's file
    return files


@pytest.fixture(scope="module")
def nq_run(tmp_path_factory, fixtures_dir, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("nq")
    files = nq_files(tmp, fixtures_dir)
    finish(rqa("prepare", "nq", "--passages", str(files["passages"]),
               "--biencoder", f"train={files['biencoder']}", "--qa", f"test={files['qa']}",
               "--out", str(tmp / "tables")))  # fmt: skip
    config = scaled_down("nq", tmp, tiny_bert_dir, tmp / "tables", {
        "train_dual_0": {"bm25_negatives": 6},  # BM25 negatives go through the answer filter
        "mine": {"depth": 40, "negatives": 6},
        "denoise": dict(RANDOM_RERANKER),
        "train_cross": {"train": {"cross_max_len": 64}},
        "train_joint": {"train": {"group_size": 4, "cross_max_len": 64}},
    })  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    raw["preset"] = "rocketqav2"  # fewer stages: no augment, no train_dual_1/2
    config.write_text(yaml.safe_dump(raw))
    finish(rqa("run", str(config)))
    return tmp / "nq"


def test_nq_runs_to_the_end_with_answer_recall(nq_run):
    metrics = json.loads((nq_run / "evaluate" / "metrics.json").read_text())
    assert set(metrics) == {"train_dual_0", "train_joint"}  # nq.yaml: no bm25, no zero-shot
    for name, values in metrics.items():
        recall = [values[f"answer_recall@{k}"] for k in (1, 5, 20, 100)]
        assert all(0 <= r <= 1 for r in recall) and recall == sorted(recall), name
        assert not any(key.startswith(("mrr", "ndcg", "recall")) for key in values)
    assert metrics["train_dual_0"]["answer_recall@100"] > 0  # the 5 answerable questions
    columns = header((nq_run / "report.md").read_text())
    assert {"answer R@5", "answer R@20", "answer R@100"} <= set(columns)
    assert not {"MRR@10", "nDCG@10", "R@10"} & set(columns)
    assert (nq_run / "recall_at_k.png").is_file()


def answer_holders(tables: Path, rows: list[dict]) -> list[tuple[str, str]]:
    """(qid, pid) of each negative whose body holds an answer, by either matcher."""
    answers = read_answers(tables / "answers-train")
    texts = body_texts(tables / "corpus", {p for r in rows for p in r["negatives"]})
    return [
        (row["qid"], pid)
        for row in rows
        for pid in row["negatives"]
        if contains_answer(answers[row["qid"]], texts[pid])
        or dpr_has_answer(answers[row["qid"]], texts[pid])
    ]


def test_no_mined_negative_holds_an_answer(nq_run):
    tables = nq_run / "prepare"
    mined = read_table(nq_run / "mine" / "examples-train").to_pylist()
    assert sum(len(r["negatives"]) for r in mined) == 6 * len(mined)  # lists still filled
    assert answer_holders(tables, mined) == []
    # the same function on candidates that put every answer-bearing passage first
    answers = read_answers(tables / "answers-train")
    corpus = read_table(tables / "corpus", columns=["pid", "text"]).to_pylist()
    ranked = []
    for row in mined:
        holders = [p["pid"] for p in corpus if contains_answer(answers[row["qid"]], p["text"])]
        others = [p["pid"] for p in corpus if p["pid"] not in holders]
        ranked.append({"qid": row["qid"], "pids": holders + others[:10]})
    assert sum(len(r["pids"]) - 10 for r in ranked) > len(ranked)  # not just the positive
    by_qid = {r["qid"]: r["pids"] for r in ranked}
    rows = with_negatives(
        load_examples(tables, "train", None).to_pylist(), by_qid, tables, "train", 6
    )
    assert answer_holders(tables, rows) == []
    assert all(len(r["negatives"]) == 6 for r in rows)


def test_no_bm25_negative_holds_an_answer(nq_run, tmp_path):
    config = load_pipeline_config(nq_run.parent / "nq.yaml")
    tables = nq_run / "prepare"
    ctx = StageContext("train_dual_0", config, tmp_path / "out", tmp_path / "work",
                       {"tables": tables})  # fmt: skip
    rows = read_table(bm25_examples(ctx, "train")).to_pylist()
    assert answer_holders(tables, rows) == []
    assert all(len(r["negatives"]) == 6 for r in rows)
    # BM25 ranks answer-bearing passages high for these questions: the filter did work
    from retrieval.bm25 import bm25_candidates

    top = bm25_candidates(tables / "corpus", tables / "queries-train", 12,
                          show_progress=False).to_pylist()  # fmt: skip
    positives = {r["qid"]: set(r["positives"]) for r in rows}
    unfiltered = [
        {"qid": r["qid"], "negatives": [p for p in r["pids"] if p not in positives[r["qid"]]]}
        for r in top
    ]
    assert answer_holders(tables, unfiltered)
