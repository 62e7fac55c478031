"""no_duplicates and mask_false_negatives from the config to the loss: the keys, the sampler
the loop builds, the collator's corpus rows and known positives, the training modules."""

import json
import math

import pyarrow as pa
import pytest
import torch

from retrieval.losses import InfoNCELoss
from retrieval.models import DualEncoder
from retrieval.tables import EXAMPLES, read_table
from retrieval.training.cached_modules import with_grad_cache
from retrieval.training.collators import DualCollator
from retrieval.training.config import GradCacheConfig, validate_train_config
from retrieval.training.examples import ResolvedExamples, resolve_examples
from retrieval.training.loop import build_sampler
from retrieval.training.modules import DualTrainingModule
from retrieval.training.no_duplicates import NoDuplicatesStepSampler
from retrieval.training.passages import PassageStore
from tests.helpers_cli import finish, rqa
from tests.retrieval.training.test_training_run import write_config

RAW = {"model": "m", "output_dir": "out", "data": {"tables": "t"}}


def test_both_keys_are_off_by_default_and_joint_takes_only_no_duplicates():
    dual = validate_train_config(RAW)
    assert (dual.no_duplicates, dual.mask_false_negatives) == (False, False)
    joint = validate_train_config({**RAW, "kind": "joint", "cross_model": "c", "no_duplicates": 1})
    assert joint.no_duplicates is True
    with pytest.raises(ValueError, match="key 'mask_false_negatives': kind joint does not take"):
        validate_train_config({**RAW, "kind": "joint", "cross_model": "c",
                               "mask_false_negatives": True})  # fmt: skip
    with pytest.raises(ValueError, match="key 'no_duplicates': kind cross does not take"):
        validate_train_config({**RAW, "kind": "cross", "no_duplicates": True})


def test_the_loop_builds_the_sampler_the_config_asks_for():
    class Examples:
        queries = ["a", "b", "c", "d"]
        positives = [torch.tensor([i]).numpy() for i in range(4)]

        def __len__(self):
            return 4

    plain = build_sampler(validate_train_config({**RAW, "batch_size": 2}), Examples(), 1)
    clean = build_sampler(
        validate_train_config({**RAW, "batch_size": 2, "no_duplicates": True}), Examples(), 1
    )
    assert type(plain).__name__ == "StepSampler"
    assert isinstance(clean, NoDuplicatesStepSampler)


def test_pipeline_dual_and_joint_stages_forward_the_keys(tmp_path):
    from pipelines.config import PipelineConfig
    from pipelines.stages.context import StageContext
    from pipelines.stages.training import train_config

    stages = {
        "train_dual_1": {"train": {"no_duplicates": True, "mask_false_negatives": True}},
        "train_joint": {"train": {"no_duplicates": True}},
    }
    raw = {"name": "x", "model": "m", "data": {"beir": str(tmp_path)}, "stages": stages}
    config = PipelineConfig.model_validate(raw)
    for name in ("train_dual_1", "train_joint"):
        inputs = {"model": "m", "tables": tmp_path, "cross_model": tmp_path}
        ctx = StageContext(name, config, tmp_path / "out", tmp_path / "work", inputs=inputs)
        train, _ = train_config(ctx, None)
        assert train.no_duplicates is True
        assert getattr(train, "mask_false_negatives", None) is (name == "train_dual_1" or None)


@pytest.fixture(scope="module")
def shared_positive_examples(scifact_tables, tmp_path_factory):
    """Four examples over real corpus passages: q0 judges A and B, q1 judges B, a second row of
    q0 judges C, q3 judges D. So B is a known positive of q0 wherever it appears."""
    pids = read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist()
    a, b, c, d = pids[:4]
    rows = [
        {"qid": "q0", "query": "first", "positives": [a, b], "negatives": []},
        {"qid": "q1", "query": "second", "positives": [b], "negatives": []},
        {"qid": "q0", "query": "first", "positives": [c], "negatives": []},
        {"qid": "q3", "query": "fourth", "positives": [d], "negatives": []},
    ]
    out = tmp_path_factory.mktemp("shared-positive") / "examples"
    resolve_examples(pa.Table.from_pylist(rows, schema=EXAMPLES), scifact_tables / "corpus",
                     out, "test")  # fmt: skip
    return ResolvedExamples(out)


def test_known_positives_are_those_of_every_row_of_the_qid(shared_positive_examples):
    examples = shared_positive_examples
    assert sorted(examples.known_positives(0).tolist()) == [0, 1, 2]
    assert sorted(examples.known_positives(2).tolist()) == [0, 1, 2]
    assert examples.known_positives(1).tolist() == [1]


@pytest.fixture(scope="module")
def masked_batch(shared_positive_examples, scifact_tables, tiny_bert_dir, tmp_path_factory):
    model = DualEncoder.from_pretrained(tiny_bert_dir, passage_max_len=32, query_max_len=16)
    store = PassageStore(scifact_tables / "corpus", tmp_path_factory.mktemp("cache"))
    collate = DualCollator(model, shared_positive_examples, store, hard_negatives=1, seed=0,
                           random_negatives=True, mask_false_negatives=True)  # fmt: skip
    return model, collate(torch.tensor([0, 1, 3]).numpy(), step=0)


def test_the_collator_hands_the_passage_rows_and_every_known_positive(masked_batch):
    _, batch = masked_batch
    ids = batch["false_negatives"]
    rows = ids["passage_rows"].tolist()
    assert len(rows) == 6 and rows[0] in (0, 1) and rows[2] == 1 and rows[4] == 3
    assert ids["known_positives"].tolist() == [[0, 1, 2], [1, -1, -1], [3, -1, -1]]


def test_the_training_modules_mask_with_the_collators_ids(masked_batch):
    model, batch = masked_batch
    module = DualTrainingModule(model, InfoNCELoss(0.5))
    torch.manual_seed(0)
    got = module(**batch)
    torch.manual_seed(0)
    queries, passages = model(batch["query_inputs"], batch["passage_inputs"])
    loss = InfoNCELoss(0.5)
    assert got.item() == pytest.approx(loss(queries, passages, **batch["false_negatives"]).item())
    assert abs(got.item() - loss(queries, passages).item()) > 1e-4  # B leaves q0's negatives
    module.eval()  # the same dropout-free step, uncached and with gradient caching
    plain = module(**batch)
    cached = with_grad_cache(module, GradCacheConfig(query_chunk=2, passage_chunk=2))
    assert cached(**batch).item() == pytest.approx(plain.item(), abs=1e-6)


@pytest.mark.slow  # a whole `rqa train-dual`; the module and collator tests above are the checks
def test_a_dual_run_with_both_keys_trains(tmp_path, scifact_tables, tiny_bert_dir):
    config = write_config(tmp_path, "clean", scifact_tables, tiny_bert_dir, max_steps=3,
                          no_duplicates=True, mask_false_negatives=True)  # fmt: skip
    finish(rqa("train-dual", "--config", str(config)))
    summary = json.loads((tmp_path / "clean" / "train_summary.json").read_text())
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    assert (tmp_path / "clean" / "model").is_dir()
