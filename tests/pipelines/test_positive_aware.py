"""Positive-aware mining (pipelines/stages/positive_aware.py, stages.mine.positive_aware): on
hand-built candidates tables with scores, the negatives mine keeps are those the rule, applied
by hand here, keeps: below max_ratio x the positive's score, margin below it, after the top
range_min non-positives; the positive's score from the list, or from the query and passage
vectors when the search missed it; the lowest of several positives. Off by default."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pipelines.config import MineStage, PipelineConfig, PositiveAwareRule
from pipelines.stages import stage_spec
from pipelines.stages.denoise import decide
from pipelines.stages.mine import mine_examples
from pipelines.stages.positive_aware import positive_aware_negatives
from pipelines.stages.spec import Output
from retrieval.errors import ConfigError
from retrieval.tables import CANDIDATES, EXAMPLES, read_table, write_table
from retrieval.tables.schemas import embeddings_schema
from tests.helpers_config import load_raw

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"

# q1: its positive p1 is retrieved (score 0.90). q2: its positive p9 is not; its vectors give
# (1, 1) . (1, 1.5) = 2.5. q3: two positives, a listed one at 5.0 and an unlisted one at
# (2, 0) . (2, 1) = 4.0; the lower, 4.0, counts.
EXAMPLES_ROWS = [
    {"qid": "q1", "query": "one", "positives": ["p1"], "negatives": []},
    {"qid": "q2", "query": "two", "positives": ["p9"], "negatives": []},
    {"qid": "q3", "query": "three", "positives": ["r0", "r9"], "negatives": []},
]
LISTS = {
    "q1": (["n1", "p1", "n2", "n3", "n4", "n5"], [0.95, 0.90, 0.88, 0.85, 0.70, 0.50]),
    "q2": (["m1", "m2", "m3", "m4"], [3.0, 2.45, 2.0, 1.0]),
    "q3": (["s1", "r0", "s2", "s3", "s4"], [6.0, 5.0, 3.85, 3.7, 2.0]),
}
QUERY_VECTORS = {"q1": [0.0, 1.0], "q2": [1.0, 1.0], "q3": [2.0, 0.0]}
PASSAGE_VECTORS = {"p1": [0.0, 0.9], "p9": [1.0, 1.5], "r0": [2.5, 0.0], "r9": [2.0, 1.0]}


def by_hand(rule: dict) -> dict[str, list[str]]:
    """The rule written out for these lists, each number read off the table above."""
    positive = {"q1": 0.90, "q2": 2.5, "q3": 4.0}
    kept = {}
    for qid, (pids, scores) in LISTS.items():
        judged = next(r["positives"] for r in EXAMPLES_ROWS if r["qid"] == qid)
        ranked = [(p, s) for p, s in zip(pids, scores) if p not in judged]
        ranked = ranked[rule.get("range_min", 0) :]
        if rule.get("max_ratio") is not None:
            ranked = [(p, s) for p, s in ranked if s < rule["max_ratio"] * positive[qid]]
        if rule.get("margin") is not None:
            ranked = [(p, s) for p, s in ranked if s < positive[qid] - rule["margin"]]
        kept[qid] = [p for p, _ in ranked]
    return kept


@pytest.fixture
def mined(tmp_path):
    """mine's examples, as the stage builds them from its section, over the tables above."""
    tables = tmp_path / "tables"
    write_table(tables / "examples-train", EXAMPLES_ROWS, EXAMPLES)
    candidates = tmp_path / "candidates"
    rows = [{"qid": q, "pids": p, "scores": s} for q, (p, s) in LISTS.items()]
    write_table(candidates, rows, CANDIDATES)
    queries = tmp_path / "query-vectors"
    schema = pa.schema([("qid", pa.string()), embeddings_schema(2).field("vector")])
    write_table(queries, [{"qid": q, "vector": v} for q, v in QUERY_VECTORS.items()], schema)
    embeddings = tmp_path / "embeddings"
    passages = [{"pid": p, "vector": v} for p, v in PASSAGE_VECTORS.items()]
    write_table(embeddings, passages, embeddings_schema(2), shard_rows=2)  # two shards

    def run(section: dict, counts: Counter | None = None) -> dict[str, list[str]]:
        mine = MineStage.model_validate({"negatives": 10, **section})
        counts = Counter() if counts is None else counts
        shards = mine_examples(mine, tables, "train", candidates, queries, embeddings,
                                counts, tmp_path / "work")  # fmt: skip
        out = tmp_path / "examples"
        write_table(out, shards, EXAMPLES)
        return {r["qid"]: r["negatives"] for r in read_table(out).to_pylist()}

    return run


@pytest.mark.parametrize(
    "rule",
    [
        {"max_ratio": 0.95},
        {"margin": 0.1},
        {"range_min": 2},
        {"max_ratio": 0.95, "margin": 0.25, "range_min": 1},
    ],
    ids=["ratio", "margin", "range_min", "all_three"],
)
def test_mine_keeps_the_negatives_the_rule_keeps(mined, rule):
    assert mined({"positive_aware": rule}) == by_hand(rule)


def test_the_bounds_come_from_the_listed_unlisted_and_lowest_positive(mined):
    """The numbers behind by_hand, spelled out: q2's unlisted positive (2.5) and q3's lower
    positive (the unlisted 4.0, not the listed 5.0, which would keep s2 under the ratio)."""
    assert mined({"positive_aware": {"max_ratio": 0.95}}) == {
        "q1": ["n3", "n4", "n5"],  # below 0.855
        "q2": ["m3", "m4"],  # below 2.375
        "q3": ["s3", "s4"],  # below 3.8
    }
    assert mined({"positive_aware": {"margin": 0.1}}) == {
        "q1": ["n4", "n5"],  # below 0.8
        "q2": ["m3", "m4"],  # below 2.4
        "q3": ["s2", "s3", "s4"],  # below 3.9
    }


def test_off_by_default_keeps_the_top_non_positives(mined):
    counts: Counter = Counter()
    assert MineStage().positive_aware is None
    assert mined({"negatives": 2}, counts) == {
        "q1": ["n1", "n2"],
        "q2": ["m1", "m2"],
        "q3": ["s1", "s2"],
    }
    assert counts == {"examples_with_negatives": 3, "negatives": 6}


def test_the_kept_list_is_cut_to_stages_mine_negatives(mined):
    assert mined({"negatives": 1, "positive_aware": {"max_ratio": 0.95}}) == {
        "q1": ["n3"],
        "q2": ["m3"],
        "q3": ["s3"],
    }


def test_a_positive_scored_at_or_below_zero_keeps_only_negatives_below_it():
    """0.9 x -1.0 = -0.9 lies above the positive: the bound stays at the positive's score."""
    rule = PositiveAwareRule(max_ratio=0.9)
    kept = positive_aware_negatives(["a", "b", "c"], [-0.5, -0.95, -1.5], [], -1.0, rule)
    assert kept == ["c"]


def test_denoise_still_filters_what_positive_aware_mining_kept(mined):
    """denoise reads mine's examples: its re-ranker decisions apply to the kept negatives only."""
    negatives = mined({"positive_aware": {"max_ratio": 0.95}})["q1"]  # n3, n4, n5
    row = {"qid": "q1", "query": "one", "positives": ["p1"], "negatives": negatives}
    logits = {"n1": -9.0, "n2": -9.0, "n3": 9.0, "n4": -9.0, "n5": -9.0}  # n3: false negative
    section = PipelineConfig.model_validate(
        {"name": "x", "model": "m", "data": {"beir": "."}}
    ).stages.denoise
    out, dropped = decide(row, logits, section)
    assert out["negatives"] == ["n4", "n5"] and dropped == 1


@pytest.mark.parametrize(
    "rule, says",
    [
        ({"max_ratio": 1.5}, "positive_aware.max_ratio"),
        ({"margin": -1}, "positive_aware.margin"),
        ({"range_min": -1}, "positive_aware.range_min"),
        ({}, "give max_ratio, margin or range_min"),
        ({"ratio": 0.9}, "positive_aware.ratio"),
    ],
)
def test_a_bad_positive_aware_section_is_one_line(tmp_path, rule, says):
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["mine"]["positive_aware"] = rule
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert "stages.mine.positive_aware" in message and says in message and "\n" not in message


def test_dual_stages_read_mine_examples_when_denoise_is_off(tmp_path):
    """Positive-aware mining as the alternative to denoising: without train_cross and denoise,
    train_dual_1 trains on mine's examples."""
    raw = yaml.safe_load(DEMO.read_text())
    assert stage_spec(load_raw(tmp_path, raw), "train_dual_1").reads["examples"] == Output(
        "denoise", "examples-train"
    )
    raw["preset"] = "rocketqa"
    raw["stages"]["mine"]["positive_aware"] = {"max_ratio": 0.95}
    for stage in ("train_cross", "denoise", "augment", "train_dual_2", "train_joint"):
        raw["stages"][stage] = {**raw["stages"].get(stage, {}), "enabled": False}
    config = load_raw(tmp_path, raw)
    assert stage_spec(config, "train_dual_1").reads["examples"] == Output("mine", "examples-train")
