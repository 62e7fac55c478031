"""Pair training (``kind: pair``): the data step against the raw STS-B file, each objective's
wiring against its formula written out here, every pair loss trained end to end on the same loop
(weights move), the export without projector or softmax head (same vectors in
sentence-transformers), and the queue of past embeddings under 2 gloo ranks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file
from torch import nn

from retrieval.losses import (
    CircleLoss,
    CoSENTLoss,
    CosineMSELoss,
    InfoNCELoss,
    MoCoQueue,
    MultiLabelCELoss,
    SBERTSoftmaxLoss,
    SimCSELoss,
)
from retrieval.tables.errors import DataError
from retrieval.tables.schemas import CORPUS
from retrieval.tables.store import read_table, write_table
from retrieval.training.config import LOSSES_BY_KIND, TrainConfig, load_train_config
from retrieval.training.modules import PairTrainingModule
from retrieval.training.pair_objectives import PAIR_OBJECTIVES
from retrieval.training.pairs import pairs_dir, prepare_pairs
from tests.conftest import STSB
from tests.helpers_dist import run_on_ranks

REPO = Path(__file__).resolve().parents[3]


def stsb_rows(n: int | None = None) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score) of STS-B train, read here with nothing but str.split."""
    lines = (STSB / "train.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    cols = [header.index(k) for k in ("sentence1", "sentence2", "score")]
    rows = [line.split("\t") for line in lines[1:] if line]
    return [(r[cols[0]], r[cols[1]], float(r[cols[2]])) for r in rows][:n]


def pair_config(tmp_path: Path, **extra) -> TrainConfig:
    data = extra.pop("data", {})
    if not {"sentences", "tables"} & set(data):
        data = {"pairs": str(STSB), **data}
    raw = {"kind": "pair", "model": "m", "output_dir": str(tmp_path / "out"), "data": data}
    return TrainConfig.model_validate({**raw, **extra})


# -- data ------------------------------------------------------------------------------------


def test_stsb_scores_are_scaled_to_0_1_and_positive_from_4(tmp_path):
    prepare_pairs(pair_config(tmp_path, data={"label_range": [0, 5]}))
    table = read_table(pairs_dir(pair_config(tmp_path))).to_pylist()
    rows = stsb_rows()
    assert len(table) == len(rows) == 400  # the STS-B train excerpt (tests/data/README.md)
    for got, (first, second, label) in zip(table, rows):
        assert (got["sentence1"], got["sentence2"], got["label"]) == (first, second, label)
        assert got["score"] == pytest.approx(label / 5)
        assert got["positive"] == (label >= 4.0)
    assert sum(r["positive"] for r in table) == sum(label >= 4.0 for *_, label in rows) == 95


def test_labels_outside_the_declared_range_are_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match=r"labels span 0\.\.5, outside data.label_range \[0, 1\]"):
        prepare_pairs(pair_config(tmp_path, data={"label_range": [0, 1]}))


def test_infonce_keeps_the_positive_pairs_only(tmp_path):
    prepare_pairs(pair_config(tmp_path, loss="infonce", data={"max_examples": 200}))
    table = read_table(pairs_dir(pair_config(tmp_path))).to_pylist()
    expected = [(a, b) for a, b, label in stsb_rows(200) if label >= 4.0]
    assert [(r["sentence1"], r["sentence2"]) for r in table] == expected


def test_senteval_cn_layout_infers_the_label_range(tmp_path):
    folder = tmp_path / "lcqmc"
    folder.mkdir()
    lines = ["今天天气很好\t今天天气不错\t1", "我想吃饭\t他在跑步\t0", "你好\t您好\t1"]
    (folder / "LCQMC.train.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = pair_config(tmp_path, data={"pairs": str(folder)})
    manifest = prepare_pairs(config)
    table = read_table(pairs_dir(config)).to_pylist()
    assert [r["score"] for r in table] == [1.0, 0.0, 1.0]
    assert [r["positive"] for r in table] == [True, False, True]
    assert manifest["meta"]["label_range"] == [0.0, 1.0] and manifest["meta"]["positive_at"] == 0.8


def test_simcse_reads_distinct_sentences_a_text_file_or_a_corpus(tmp_path):
    rows = stsb_rows()
    distinct = list(dict.fromkeys([*(r[0] for r in rows), *(r[1] for r in rows)]))
    assert len(distinct) == 693  # of the excerpt's 400 pairs
    config = pair_config(tmp_path / "a", loss="simcse_unsup")
    prepare_pairs(config)
    table = read_table(pairs_dir(config))
    assert table["sentence1"].to_pylist() == distinct and table["sentence2"].null_count == 693
    lines = tmp_path / "sentences.txt"
    lines.write_text("one sentence\n\n  another one  \n", encoding="utf-8")
    config = pair_config(tmp_path / "b", loss="simcse_unsup", data={"sentences": str(lines)})
    prepare_pairs(config)
    assert read_table(pairs_dir(config))["sentence1"].to_pylist() == ["one sentence", "another one"]
    tables = tmp_path / "tables"
    corpus = [
        {"pid": "1", "title": "Title", "text": "body"},
        {"pid": "2", "title": "", "text": "2"},
    ]
    write_table(tables / "corpus", corpus, CORPUS)
    config = pair_config(tmp_path / "c", loss="simcse_unsup", data={"tables": str(tables)})
    prepare_pairs(config)
    assert read_table(pairs_dir(config))["sentence1"].to_pylist() == ["Title body", "2"]


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra,message",
    [
        ("loss: cross_batch\n", "loss 'cross_batch' does not train a pair model"),
        ("loss: cosent\nqueue: true\n", "key 'queue': loss 'cosent' takes no extra negatives"),
        ("loss: infonce\nmoco_queue_size: 8\n", "key 'moco_queue_size'"),
        ("group_size: 4\n", "key 'group_size': a pair is its own group"),
        ("loss: simcse_unsup\nloss_args: {temprature: 1}\n", "loss_args.temprature"),
        ("projector: {hidden_dm: 3}\n", "key 'projector.hidden_dm'"),
        ("data: {label_range: [5, 0]}\n", "key 'data.label_range'"),
        ("data: {}\n", "got none"),
    ],
)
def test_bad_pair_configs_are_one_line_errors(tmp_path, extra, message):
    text = f"kind: pair\nmodel: m\noutput_dir: out\ndata: {{pairs: {STSB}}}\n"
    if extra.startswith("data:"):
        extra = extra.replace("{", f"{{pairs: {STSB}, " if "label" in extra else "{", 1)
        text = text.replace(f"data: {{pairs: {STSB}}}\n", "")
    path = tmp_path / "c.yaml"
    path.write_text(text + extra)
    with pytest.raises(ValueError) as err:
        load_train_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_queue_and_projector_are_refused_for_dual_training(tmp_path):
    (tmp_path / "t").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(f"model: m\noutput_dir: out\ndata: {{tables: {tmp_path / 't'}}}\nqueue: true\n")
    with pytest.raises(ValueError, match="key 'queue': only kind pair uses it"):
        load_train_config(path)


def test_every_pair_loss_has_an_objective():
    assert set(LOSSES_BY_KIND["pair"]) == set(PAIR_OBJECTIVES)


# -- each objective's wiring, against its formula written out --------------------------------


class Vectors(nn.Module):
    """An 'encoder' that returns the vectors it is handed as ``inputs['v']``."""

    def encode_query(self, inputs):
        return inputs["v"]


def written_out(name: str, a: np.ndarray, b: np.ndarray, score, positive, loss) -> float:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    n = len(a)
    if name == "cosent":
        terms = [math.exp(20 * (cos[j] - cos[i])) for i in range(n) for j in range(n)
                 if score[i] > score[j]]  # fmt: skip
        return math.log(1 + sum(terms))
    if name == "cosine_mse":
        return float(np.mean((cos - score) ** 2))
    if name == "sbert_softmax":
        w = loss.classifier.weight.detach().numpy()
        bias = loss.classifier.bias.detach().numpy()
        logits = np.concatenate([a, b, np.abs(a - b)], 1) @ w.T + bias
        classes = [min(int(s * 3), 2) for s in score]
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return float(-np.mean([logp[i, c] for i, c in enumerate(classes)]))
    if name == "circle":
        m, gamma = loss.m, loss.gamma
        pos = [gamma * max(0, 1 + m - c) * (c - (1 - m)) for c, p in zip(cos, positive) if p]
        neg = [gamma * max(0, c + m) * (c - m) for c, p in zip(cos, positive) if not p]
        return math.log(1 + sum(math.exp(x) for x in neg) * sum(math.exp(-x) for x in pos))
    if name == "multilabel_ce":
        pos = sum(math.exp(-20 * c) for c, p in zip(cos, positive) if p)
        neg = sum(math.exp(20 * c) for c, p in zip(cos, positive) if not p)
        return math.log(1 + neg) + math.log(1 + pos)
    sim = (
        (a / np.linalg.norm(a, axis=1, keepdims=True))
        @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
        / 0.05
    )  # infonce and simcse_unsup: b_i is a_i's positive
    return float(np.mean([np.log(np.exp(sim[i]).sum()) - sim[i, i] for i in range(n)]))


LOSS_OF = {
    "cosent": lambda: CoSENTLoss(20.0),
    "cosine_mse": CosineMSELoss,
    "sbert_softmax": lambda: SBERTSoftmaxLoss(dim=4, num_labels=3),
    "infonce": lambda: InfoNCELoss(0.05, "cosine"),
    "simcse_unsup": lambda: SimCSELoss(0.05),
    "circle": lambda: CircleLoss(0.25, 4.0),  # gamma 256 overflows exp() written out
    "multilabel_ce": lambda: MultiLabelCELoss(20.0),
}


@pytest.mark.parametrize("name", LOSSES_BY_KIND["pair"])
def test_each_objective_computes_its_formula_on_the_pairs(name):
    torch.manual_seed(0)
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    score = torch.tensor([1.0, 0.76, 0.5, 0.9, 0.1, 0.34], dtype=torch.float64)
    positive = (score >= 0.8).double()
    loss = LOSS_OF[name]().double()
    module = PairTrainingModule(Vectors(), loss, PAIR_OBJECTIVES[name])
    got = module({"v": a}, {"v": b}, {"score": score, "positive": positive})
    expected = written_out(name, a.numpy(), b.numpy(), score.numpy(), positive.numpy(), loss)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_simcse_with_a_queue_adds_the_queued_vectors_to_every_denominator():
    torch.manual_seed(1)
    a, b, old = torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3)
    queue = MoCoQueue(8, 3)
    module = PairTrainingModule(Vectors(), SimCSELoss(0.05), PAIR_OBJECTIVES["simcse_unsup"])
    module.queue = queue
    targets = {"score": torch.zeros(4), "positive": torch.zeros(4)}
    empty = module({"v": a}, {"v": b}, targets)  # the first step: nothing queued yet
    assert empty.item() == pytest.approx(SimCSELoss(0.05)(a, b).item(), rel=1e-6)
    torch.testing.assert_close(queue.negatives(), b)
    queue.push(old)  # now b, then old (newest last, 8 rows kept: b[1:] and old)
    got = module({"v": a}, {"v": b}, targets).item()
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    an, bn, qn = unit(a.numpy()), unit(b.numpy()), unit(torch.cat([b[1:], old]).numpy())
    expected = np.mean([
        np.log(np.exp(an[i] @ bn.T / 0.05).sum() + np.exp(an[i] @ qn.T / 0.05).sum())
        - an[i] @ bn[i] / 0.05 for i in range(4)
    ])  # fmt: skip
    assert got == pytest.approx(float(expected), rel=1e-5)


# -- trained end to end on the loop ----------------------------------------------------------

RUNS = {  # name -> config changes; every pair loss, plus the queue and projector variants
    **{loss: {"loss": loss} for loss in LOSSES_BY_KIND["pair"]},
    "infonce_queue": {"loss": "infonce", "queue": True},
    "simcse_queue": {"loss": "simcse_unsup", "queue": True, "queue_batches": 1.5},
    "softmax_projector": {
        "loss": "sbert_softmax",
        "projector": {"hidden_dim": 16, "out_dim": 8},
    },
}
TRAIN_ALL = (
    "import sys\nfrom pipelines.cli import main\n"
    "codes = [main(['train-pairs', '--config', c]) for c in sys.argv[1:]]\n"
    "sys.exit(max(codes))\n"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir) -> dict[str, Path]:
    """Each run of RUNS: 3 steps of 8 pairs from STS-B train on the tiny BERT, all in one
    process (one DeepSpeed start-up), as `rqa train-pairs` runs them."""
    root = tmp_path_factory.mktemp("pairs")
    stsb = root / "stsb"
    stsb.mkdir()
    lines = (STSB / "train.tsv").read_text(encoding="utf-8").splitlines()
    (stsb / "train.tsv").write_text("\n".join(lines[:65]) + "\n", encoding="utf-8")
    configs = []
    for name, changes in RUNS.items():
        config = {
            "kind": "pair", "model": str(tiny_bert_dir), "output_dir": str(root / name),
            "data": {"pairs": str(stsb), "label_range": [0, 5]}, "batch_size": 8, "max_steps": 3,
            "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.0, "log_every": 1,
            "launcher": "local", **changes,
        }  # fmt: skip
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        configs.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_ALL, *configs], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {name: root / name for name in RUNS}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("name", RUNS)
def test_every_pair_loss_trains_on_the_loop_and_moves_the_weights(trained, tiny_bert_dir, name):
    out = trained[name]
    log = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in log)
    start, end = weights(tiny_bert_dir), weights(out / "model")
    assert set(end) == set(start)
    moved = [k for k in start if not torch.equal(start[k], end[k])]
    assert len(moved) > len(start) // 2, f"only {moved} moved"
    card = (out / "model" / "README.md").read_text()
    assert f'| loss | `"{RUNS[name]["loss"]}"` |' in card and '| training kind | `"pair"` |' in card


def test_queue_run_holds_a_full_queue_in_its_checkpoint(trained):
    """simcse_queue: 1.5 global batches of 8 = 12 rows, filled after 2 steps."""
    ckpt = trained["simcse_queue"] / "checkpoints"
    tag = (ckpt / "latest").read_text().strip()
    state = torch.load(next((ckpt / tag).glob("mp_rank_00_model_states.pt")), weights_only=False)
    module = state["module"]
    assert module["queue.queue"].shape == (12, 32) and int(module["queue.count"]) == 12


def test_export_drops_the_projector_and_softmax_head_and_loads_in_sentence_transformers(
    trained, tiny_bert_dir
):
    from sentence_transformers import SentenceTransformer

    from retrieval.encoding import encode_queries
    from retrieval.models import DualEncoder

    folder = trained["softmax_projector"] / "model"
    assert set(weights(folder)) == set(weights(tiny_bert_dir))  # no classifier, no projector
    modules = [m["type"] for m in json.loads((folder / "modules.json").read_text())]
    assert [m.rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert not any(p.name.endswith("Dense") for p in folder.iterdir())
    sentences = [a for a, _, _ in stsb_rows(6)]
    ours = encode_queries(DualEncoder.from_pretrained(folder), sentences, 4, False)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(sentences, batch_size=4)
    assert ours.shape == (6, 32)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


# -- the queue under data parallelism --------------------------------------------------------

WORLD, BATCH, DIM = 2, 3, 4


class RankVectors(nn.Module):
    """This rank's fixed ``a`` and ``b`` vectors, trainable, whatever the inputs."""

    def __init__(self, rank: int):
        super().__init__()
        generator = torch.Generator().manual_seed(rank)
        self.a = nn.Parameter(torch.randn(BATCH, DIM, generator=generator))
        self.b = nn.Parameter(torch.randn(BATCH, DIM, generator=generator))

    def encode_query(self, inputs):
        return self.a if inputs["side"] == "a" else self.b


def _rank(rank: int, out: str) -> None:
    module = PairTrainingModule(
        RankVectors(rank), InfoNCELoss(0.05, "cosine"), PAIR_OBJECTIVES["infonce"],
        queue=MoCoQueue(16, DIM),
    )  # fmt: skip
    module({"side": "a"}, {"side": "b"}, {}).backward()
    torch.save(module.queue.negatives(), f"{out}/queue-{rank}.pt")


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_every_rank_holds_the_same_queue_of_all_ranks_vectors(tmp_path):
    run_on_ranks(_rank, WORLD, str(tmp_path))
    queues = [torch.load(tmp_path / f"queue-{r}.pt") for r in range(WORLD)]
    expected = torch.cat([RankVectors(r).b.detach() for r in range(WORLD)])
    for queue in queues:
        torch.testing.assert_close(queue, expected, rtol=0, atol=0)
