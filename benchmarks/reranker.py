"""Where a run's re-ranker loses to the retriever it re-ranks: a diagnosis of a finished run.

RocketQA's cross-encoder is the strongest model of its pipeline; on SciFact RQA's is the
weakest over a top 100. This script gathers the evidence for why, from a finished
`rqa run` (its prepare tables, its evaluate stage's TREC runs, its re-rankers), scoring each
candidate list with each re-ranker once (cached under benchmarks/results/cache/reranker/):

1. depth: nDCG@10 after re-ranking the top d (d = 10 ... 100), alone and fused by RRF, against
   the retriever's own order; for each re-ranker and each candidate list (the final dense
   retriever's, BM25's, and a sample of train queries over mine's candidates).
2. bands: for each band of the retriever's ranks (1-10, 11-20, 21-50, 51-100), how many relevant
   and non-relevant passages the re-ranker lifts into its top 10, their mean logits, and how
   often a relevant passage outscores a non-relevant one of that band of the same query.
3. truncation: how many pairs the re-ranker's max length cuts, and nDCG@10 at other lengths.
4. together: with two re-rankers or more, their mean z-scored logits and RRF of all of them with
   the retriever, per depth.

Usage: python benchmarks/reranker.py --run-dir runs/scifact [--max-lens 256 512]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
from pathlib import Path

from common import CACHE, quiet_environment, table, write_result

quiet_environment()

from retrieval.bm25 import bm25_candidates  # noqa: E402
from retrieval.fusion import reciprocal_rank_fusion  # noqa: E402
from retrieval.metrics import read_trec_run  # noqa: E402
from retrieval.metrics.evaluate import evaluate, per_query  # noqa: E402
from retrieval.metrics.order import trec_order  # noqa: E402
from retrieval.models import CrossEncoder  # noqa: E402
from retrieval.models.dual_encoder import passage_text  # noqa: E402
from retrieval.rerank import candidates_to_run, rerank_top, top_of_run  # noqa: E402
from retrieval.tables.labels import read_qrels  # noqa: E402
from retrieval.tables.lookup import passages_of, queries_of  # noqa: E402
from retrieval.tables.store import read_table  # noqa: E402

DEPTHS = (10, 20, 30, 50, 100)
BANDS = ((1, 10), (11, 20), (21, 50), (51, 100))
SCORES = CACHE / "reranker"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished `rqa run`")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument(
        "--train-sample",
        type=int,
        default=100,
        help="train queries re-ranked over mine's candidates (0: none)",
    )
    parser.add_argument(
        "--max-lens",
        type=int,
        nargs="*",
        default=[],
        help="also score the final list at these pair lengths",
    )
    parser.add_argument(
        "--lists",
        nargs="*",
        choices=("final", "bm25", "train"),
        default=["final", "bm25", "train"],
        help="candidate lists to re-rank (final: the last dual stage's eval run)",
    )
    parser.add_argument(
        "--rerankers",
        nargs="*",
        choices=("train_cross", "train_joint"),
        default=["train_cross", "train_joint"],
        help="the run's re-rankers to score with",
    )
    parser.add_argument(
        "--cross",
        nargs="*",
        default=[],
        help="extra re-rankers as NAME=FOLDER (beside the run's own)",
    )
    return parser.parse_args()


def rerankers(run_dir: Path, own: list[str], extra: list[str]) -> dict[str, Path]:
    """The run's re-rankers asked for (train_cross's, train_joint's) that exist, and any named
    on the command line."""
    folders = {"train_cross": "train_cross/model", "train_joint": "train_joint/cross_model"}
    found = {name: run_dir / folders[name] for name in own}
    found = {name: path for name, path in found.items() if (path / "config.json").is_file()}
    for item in extra:
        name, _, folder = item.partition("=")
        found[name] = Path(folder)
    return found


def candidate_lists(args: argparse.Namespace, tables: Path) -> dict[str, tuple[dict, str]]:
    """name -> (run of the top ``depth``, split): the final dense retriever's eval run, BM25's,
    and mine's train candidates of a sample of train queries."""
    lists: dict[str, tuple[dict, str]] = {}
    evaluate_dir = args.run_dir / "evaluate"
    dense = sorted(p.stem.removeprefix("run-") for p in evaluate_dir.glob("run-train_*.trec"))
    if dense and "final" in args.lists:  # the last dual stage's: what evaluate re-ranks
        run = read_trec_run(evaluate_dir / f"run-{dense[-1]}.trec")
        lists[f"{dense[-1]} ({args.split})"] = (top_of_run(run, args.depth), args.split)
    if "bm25" in args.lists:
        bm25 = bm25_candidates(tables / "corpus", tables / f"queries-{args.split}", args.depth)
        lists[f"bm25 ({args.split})"] = (candidates_to_run(bm25), args.split)
    mined = args.run_dir / "mine" / "candidates-train"
    if "train" in args.lists and args.train_sample and mined.is_dir():
        run = candidates_to_run(read_table(mined))
        qrels = read_qrels(tables / "qrels-train")
        judged = sorted(q for q in run if q in qrels)
        sample = random.Random(0).sample(judged, min(args.train_sample, len(judged)))
        lists["train_dual_0 (train sample)"] = (top_of_run({q: run[q] for q in sample},
                                                           args.depth), "train")  # fmt: skip
    return lists


def scored(model_dir: Path, top: dict, tables: Path, split: str, max_len: int | None) -> dict:
    """The re-ranker's logits for every pair of ``top``, cached by model, list and length."""
    key = json.dumps([str(model_dir.resolve()), _mtime(model_dir), split, max_len, top],
                     sort_keys=True)  # fmt: skip
    path = SCORES / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")
    if path.is_file():
        return json.loads(path.read_text())
    overrides = {"max_len": max_len} if max_len else {}
    model = CrossEncoder.from_pretrained(str(model_dir), **overrides)
    result = rerank_top(model, top, tables / "corpus", tables / f"queries-{split}",
                        batch_size=32, precision="auto")  # fmt: skip
    SCORES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def _mtime(folder: Path) -> float:
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return max((p.stat().st_mtime for p in weights), default=0.0)


def depth_rows(name: str, cross: str, top: dict, logits: dict, qrels: dict) -> list[list]:
    """nDCG@10 of the retriever, and of re-ranking (alone, RRF) its top d for each d."""
    rows = []
    base = evaluate(qrels, top, ("ndcg@10",))["ndcg@10"]
    for depth in DEPTHS:
        head = top_of_run(top, depth)
        reranked = {q: {p: logits[q][p] for p in head[q]} for q in head}
        fused = reciprocal_rank_fusion([head, reranked])
        alone = evaluate(qrels, reranked, ("ndcg@10",))["ndcg@10"]
        rrf = evaluate(qrels, fused, ("ndcg@10",))["ndcg@10"]
        rows.append([name, cross, depth, round(base, 4), round(alone, 4), round(rrf, 4)])
    return rows


def together_rows(name: str, top: dict, logits: dict[str, dict], qrels: dict) -> list[list]:
    """Every re-ranker of the run at once, per depth d of the retriever's list: the mean of their
    per-query z-scored logits (alone), and RRF of each re-ranker's order and the retriever's.
    A run trains two (train_cross's, train_joint's) and evaluate uses one."""
    rows = []
    for depth in DEPTHS:
        head = top_of_run(top, depth)
        orders = [{q: {p: scores[q][p] for p in head[q]} for q in head} for scores in
                  logits.values()]  # fmt: skip
        zs = [z_scored(order) for order in orders]
        mean = {q: {p: sum(z[q][p] for z in zs) / len(zs) for p in head[q]} for q in head}
        fused = reciprocal_rank_fusion([head, *orders])
        alone = evaluate(qrels, mean, ("ndcg@10",))["ndcg@10"]
        rrf = evaluate(qrels, fused, ("ndcg@10",))["ndcg@10"]
        rows.append([name, " + ".join(logits), depth, round(alone, 4), round(rrf, 4)])
    return rows


def z_scored(run: dict) -> dict:
    """Each query's scores minus their mean, over their standard deviation (1 where they are
    all equal): logits of two models on one scale before they are averaged."""
    out = {}
    for qid, docs in run.items():
        mean, std = statistics.fmean(docs.values()), statistics.pstdev(docs.values()) or 1.0
        out[qid] = {pid: (x - mean) / std for pid, x in docs.items()}
    return out


def band_rows(name: str, cross: str, top: dict, logits: dict, qrels: dict) -> list[list]:
    """Per band of retriever ranks: passages, those the re-ranker puts in its top 10, mean
    logits, and the share of (relevant, non-relevant of the band) pairs of a query ordered right."""
    stats = {band: {"rel": 0, "non": 0, "rel10": 0, "non10": 0, "lr": [], "ln": [], "ok": 0,
                    "pairs": 0} for band in BANDS}  # fmt: skip
    for qid, scores in top.items():
        relevant = {p for p, r in qrels.get(qid, {}).items() if r > 0}
        if not relevant:
            continue
        rerank_top10 = set(trec_order(logits[qid])[:10])
        rel_logits = [logits[qid][p] for p in scores if p in relevant]
        for rank, pid in enumerate(trec_order(scores), start=1):
            band = next(b for b in BANDS if b[0] <= rank <= b[1]) if rank <= BANDS[-1][1] else None
            if band is None:
                continue
            s, value = stats[band], logits[qid][pid]
            kind = "rel" if pid in relevant else "non"
            s[kind] += 1
            s[kind + "10"] += pid in rerank_top10
            s["lr" if kind == "rel" else "ln"].append(value)
            if kind == "non":
                s["pairs"] += len(rel_logits)
                s["ok"] += sum(r > value for r in rel_logits)
    rows = []
    for (lo, hi), s in stats.items():
        mean = lambda xs: round(sum(xs) / len(xs), 2) if xs else "-"  # noqa: E731
        ordered = round(s["ok"] / s["pairs"], 3) if s["pairs"] else "-"
        rows.append([name, cross, f"{lo}-{hi}", s["rel"], s["rel10"], s["non"], s["non10"],
                     mean(s["lr"]), mean(s["ln"]), ordered])  # fmt: skip
    return rows


def truncated_share(model_dir: Path, top: dict, tables: Path, split: str, max_len: int) -> float:
    """The share of the list's pairs longer than ``max_len`` tokens (cut by the re-ranker)."""
    model = CrossEncoder.from_pretrained(str(model_dir))
    queries = queries_of(tables / f"queries-{split}", list(top))
    passages = passages_of(tables / "corpus", {p for row in top.values() for p in row})
    pairs = [(queries[q], passage_text(*passages[p])) for q in top for p in top[q]]
    lengths = [len(ids) for ids in model.tokenizer([a for a, _ in pairs], [b for _, b in pairs])[
        "input_ids"]]  # fmt: skip
    return sum(n > max_len for n in lengths) / len(lengths)


def main() -> None:
    args = parse_args()
    tables = args.run_dir / "prepare"
    crosses = rerankers(args.run_dir, args.rerankers, args.cross)
    lists = candidate_lists(args, tables)
    splits = {split for _, split in lists.values()}
    qrels = {split: read_qrels(tables / f"qrels-{split}") for split in splits}
    depth, bands, per_q, together = [], [], {}, []
    for name, (top, split) in lists.items():
        judged = {q: qrels[split][q] for q in top if q in qrels[split]}  # a sample: its own
        all_logits = {}
        for cross, folder in crosses.items():
            logits = all_logits[cross] = scored(folder, top, tables, split, None)
            depth += depth_rows(name, cross, top, logits, judged)
            bands += band_rows(name, cross, top, logits, judged)
            per_q[f"{cross} | {name}"] = _wins(top, logits, judged)
        if len(all_logits) > 1:
            together += together_rows(name, top, all_logits, judged)
    print(table(["candidates", "re-ranker", "depth", "retriever nDCG@10", "re-ranked",
                 "re-ranked + RRF"], depth))  # fmt: skip
    if together:
        print(table(["candidates", "re-rankers", "depth", "mean z-score", "RRF with retriever"],
                    together))  # fmt: skip
    print(table(["candidates", "re-ranker", "retriever ranks", "relevant", "-> top 10",
                 "non-relevant", "-> top 10", "mean logit rel", "mean logit non",
                 "rel > non"], bands))  # fmt: skip
    print(table(["re-ranker | candidates", "queries better", "worse", "same"],
                [[k, *v] for k, v in per_q.items()]))  # fmt: skip
    lengths = length_rows(args, crosses, lists, tables, qrels)
    if lengths:
        print(table(["re-ranker", "max length", "pairs cut", "re-ranked nDCG@10"], lengths))
    payload = {"run_dir": str(args.run_dir), "depth": depth, "bands": bands, "per_query": per_q,
               "together": together, "lengths": lengths}  # fmt: skip
    write_result("reranker-" + "-".join(crosses), payload)


def _wins(top: dict, logits: dict, qrels: dict) -> list[int]:
    """Queries whose nDCG@10 the re-ranker (over the whole list) raises, lowers, leaves."""
    before = per_query(qrels, top, ("ndcg@10",))
    after = per_query(qrels, {q: logits[q] for q in top}, ("ndcg@10",))
    diffs = [after[q]["ndcg@10"] - before[q]["ndcg@10"] for q in before]
    return [sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs),
            sum(abs(d) <= 1e-9 for d in diffs)]  # fmt: skip


def length_rows(args, crosses: dict, lists: dict, tables: Path, qrels: dict) -> list[list]:
    """The final list re-scored at other pair lengths, beside the share of pairs each cuts."""
    finals = [name for name in lists if not name.startswith(("bm25", "train_dual_0 (train"))]
    if not finals:
        return []
    top, split = lists[finals[0]]
    rows = []
    for cross, folder in crosses.items():
        trained = CrossEncoder.from_pretrained(str(folder)).settings.max_len
        for max_len in [trained, *args.max_lens]:
            logits = scored(folder, top, tables, split, None if max_len == trained else max_len)
            ndcg = evaluate(qrels[split], logits, ("ndcg@10",))["ndcg@10"]
            share = truncated_share(folder, top, tables, split, max_len)
            rows.append([cross, max_len, f"{share:.1%}", round(ndcg, 4)])
    return rows


if __name__ == "__main__":
    main()
