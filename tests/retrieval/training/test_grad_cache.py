"""Gradient caching (retrieval/training/grad_cache.py): one cached step gives the parameters the
gradients of the plain full-batch step, alone, in a DeepSpeed engine (ZeRO 0 and 2), over two
gloo workers with cross-batch negatives, with dropout (the replayed masks), and for joint
training; the config refuses what it cannot do."""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from retrieval.errors import ConfigError
from retrieval.losses import CrossBatchInfoNCELoss, InfoNCELoss, JointListwiseLoss, MoCoQueue
from retrieval.training.cached_modules import (
    CachedDualTrainingModule,
    CachedJointTrainingModule,
    with_grad_cache,
)
from retrieval.training.config import GradCacheConfig, JointGradCacheConfig, load_train_config
from retrieval.training.grad_cache import in_batch_order, length_chunks, split_rows, trim_padding
from retrieval.training.loop import build, deepspeed_config, skip_cpu_shm_allreduce
from retrieval.training.modules import DualTrainingModule, JointTrainingModule
from retrieval.training.rng_state import RngState
from tests.helpers_dist import free_port, run_on_ranks
from tests.retrieval.training.grad_cache_cases import (
    GROUP,
    QUERIES,
    assert_same_gradients,
    chunked_embeddings,
    cross_encoder,
    dual_batch,
    dual_encoder,
    gradients,
    joint_batch,
)

# Uneven on purpose: the last chunk of each side is a remainder (6 = 4+2, 12 = 5+5+2). The
# cases here keep each side's last chunk's graph; LOCAL_CHUNKS (below) re-encode it (the default).
CHUNKS = JointGradCacheConfig(query_chunk=4, passage_chunk=5, pair_chunk=5, keep_last=True)
# float64 steps agree to rounding (1e-15); the brief's bound is 1e-6.
F64 = {"rtol": 1e-6, "atol": 1e-9}
# DeepSpeed all-reduces only float16/bfloat16/float32 gradients (engine.py asserts "unsupported
# grad type: torch.float64"), so its steps run in float32 (24-bit mantissa, ~6e-8 relative).
# The cached and plain steps sum the same terms in other orders (chunked vs whole-batch
# matmuls, trimmed attention widths, the cross-rank average): measured <= 5e-6 at gradient
# magnitudes up to ~2. A real error (a lost chunk, a lost cross-rank term) is > 1e-3.
F32 = {"rtol": 1e-4, "atol": 5e-5}


def count_forwards(module: nn.Module) -> list:
    calls: list = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "keep_last", [True, False, 2], ids=["keep-last", "re-encode-all", "keep-last-2"]
)
def test_cached_step_has_the_full_batch_gradients(tiny_bert_dir, keep_last):
    model = dual_encoder(tiny_bert_dir).eval()  # dropout off: the whole batch is the reference
    plain = DualTrainingModule(model, InfoNCELoss(temperature=0.05, similarity="cosine"))
    batch = dual_batch(model)
    calls = count_forwards(model.query_model)
    want_loss = plain(**batch)
    want_loss.backward()
    want = gradients(plain)
    assert len(calls) == 2  # queries, passages: one forward each
    model.zero_grad(set_to_none=True)
    cached = with_grad_cache(plain, CHUNKS.model_copy(update={"keep_last": int(keep_last)}))
    loss = cached(**batch)
    loss.backward()
    # every chunk twice (without, then with a graph), but for each side's last keep_last
    # chunks, encoded once with their graphs kept (2 keeps both query chunks, 2 of 3 passage)
    kept = min(int(keep_last), 2) + min(int(keep_last), 3)
    assert len(calls) == 2 + 2 * (2 + 3) - kept
    assert isinstance(cached, CachedDualTrainingModule) and cached.model is model
    torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-12)
    assert_same_gradients(gradients(cached), want, **F64)


def test_cached_step_with_a_moco_queue_pushes_and_scores_as_the_plain_one(tiny_bert_dir):
    results = []
    for cache in (False, True):
        model = dual_encoder(tiny_bert_dir).eval()
        queue = MoCoQueue(32, model.dim, dtype=torch.float64)
        queue.push(torch.randn(3, model.dim, generator=torch.Generator().manual_seed(3)))
        module = DualTrainingModule(model, InfoNCELoss(0.05, "cosine"), queue)
        module = with_grad_cache(module, CHUNKS) if cache else module
        module(**dual_batch(model)).backward()
        results.append((gradients(module), queue.negatives()))
    (want, want_queue), (got, got_queue) = results
    assert len(got_queue) == 3 + 12
    torch.testing.assert_close(got_queue, want_queue, rtol=0, atol=1e-12)
    assert_same_gradients(got, want, **F64)


def joint_modules(folder: Path) -> tuple[JointTrainingModule, dict]:
    dual, cross = dual_encoder(folder), cross_encoder(folder)
    module = JointTrainingModule(dual, cross, JointListwiseLoss(), GROUP)
    return module, joint_batch(dual, cross)


def test_cached_joint_step_has_the_full_batch_gradients(tiny_bert_dir):
    plain, batch = joint_modules(tiny_bert_dir)
    plain.eval()
    calls = count_forwards(plain.cross.model)
    want_loss = plain(**batch)
    want_loss.backward()
    want = gradients(plain)
    assert any(name.startswith("cross.") for name in want)
    plain.zero_grad(set_to_none=True)
    cached = with_grad_cache(plain, CHUNKS)
    loss = cached(**batch)
    loss.backward()
    assert isinstance(cached, CachedJointTrainingModule)
    assert len(calls) == 1 + 2 * 3 - 1  # 12 pairs in chunks of 5, each twice but the last
    torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-12)
    assert_same_gradients(gradients(cached), want, **F64)


def on(device: str, batch: dict) -> dict:
    return {k: {n: t.to(device) for n, t in v.items()} for k, v in batch.items()}


def dual_case(folder: Path, device: str = "cpu"):
    model = dual_encoder(folder)
    module = DualTrainingModule(model, InfoNCELoss(0.05, "cosine")).to(device)
    batch = on(device, dual_batch(model))

    def reference() -> torch.Tensor:
        queries = chunked_embeddings(model.encode_query, batch["query_inputs"], CHUNKS.query_chunk)
        passages = batch["passage_inputs"]
        return module.embedding_loss(
            queries, chunked_embeddings(model.encode_passage, passages, CHUNKS.passage_chunk)
        )

    return module, batch, reference


def joint_case(folder: Path, device: str = "cpu"):
    module, batch = joint_modules(folder)
    module, batch = module.to(device), on(device, batch)

    def reference() -> torch.Tensor:
        dual, chunk = module.dual, CHUNKS.query_chunk
        queries = chunked_embeddings(dual.encode_query, batch["query_inputs"], chunk)
        passages = chunked_embeddings(
            dual.encode_passage, batch["passage_inputs"], CHUNKS.passage_chunk
        )
        logits = chunked_embeddings(module.cross, batch["pair_inputs"], CHUNKS.pair_chunk)
        return module.list_loss(queries, passages, logits)

    return module, batch, reference


def dropout_steps(case, folder: Path, device: str = "cpu", chunks=CHUNKS) -> dict:
    """In train mode: the plain step over the cached step's chunks (its dropout masks), the
    cached step, and a step without dropout, each from the same seed."""
    module, batch, reference = case(folder, device)
    module.train()
    torch.manual_seed(11)
    want_loss = reference()
    want_loss.backward()
    out = {"want_loss": want_loss.detach(), "want": gradients(module)}
    out["want_rng"] = torch.get_rng_state()
    module.zero_grad(set_to_none=True)
    cached = with_grad_cache(module, chunks)
    torch.manual_seed(11)
    loss = cached(**batch)
    loss.backward()
    out.update(loss=loss.detach(), got=gradients(cached), rng=torch.get_rng_state())
    with torch.no_grad():
        out["eval_loss"] = cached.eval()(**batch)
    return out


@pytest.mark.parametrize("keep_last", [1, 2], ids=["keep-last", "keep-last-2"])
@pytest.mark.parametrize("case", [dual_case, joint_case], ids=["dual", "joint"])
def test_dropout_masks_are_replayed(tiny_bert_dir, case, keep_last):
    chunks = CHUNKS.model_copy(update={"keep_last": keep_last})
    steps = dropout_steps(case, tiny_bert_dir, chunks=chunks)
    assert abs(float(steps["eval_loss"] - steps["want_loss"])) > 1e-4, "dropout is not on"
    torch.testing.assert_close(steps["loss"], steps["want_loss"], rtol=0, atol=1e-12)
    assert_same_gradients(steps["got"], steps["want"], **F64)
    # the random draws go on from where the first pass left them, as after the plain step
    assert torch.equal(steps["rng"], steps["want_rng"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", [dual_case, joint_case], ids=["dual", "joint"])
def test_dropout_masks_are_replayed_on_cuda(tiny_bert_dir, case):
    """Dropout on CUDA draws from the CUDA generator: RngState must capture and restore it."""
    steps = dropout_steps(case, tiny_bert_dir, "cuda")
    assert abs(float(steps["eval_loss"] - steps["want_loss"])) > 1e-4, "dropout is not on"
    torch.testing.assert_close(steps["loss"], steps["want_loss"], rtol=0, atol=1e-12)
    assert_same_gradients(steps["got"], steps["want"], **F64)


@pytest.mark.parametrize("case", [dual_case, joint_case], ids=["dual", "joint"])
def test_without_the_replay_the_gradients_are_wrong(tiny_bert_dir, case, monkeypatch):
    monkeypatch.setattr(RngState, "restore", lambda self: None)
    steps = dropout_steps(case, tiny_bert_dir)
    # the first pass is untouched, so the loss is right; the second pass draws new masks
    torch.testing.assert_close(steps["loss"], steps["want_loss"], rtol=0, atol=1e-12)
    worst = max(
        float((steps["got"][n] - steps["want"][n]).abs().max() / steps["want"][n].abs().max())
        for n in steps["want"]
    )
    assert worst > 1e-3


def test_kept_graphs_are_back_propagated_before_any_chunk_is_encoded_again(
    tiny_bert_dir, monkeypatch
):
    """Pass 3 frees every kept graph before it re-encodes a chunk, so it never holds the kept
    chunks' activations and a re-encoded chunk's at once."""
    from retrieval.training import grad_cache

    events, original = [], grad_cache.replay
    module, batch, _ = dual_case(tiny_bert_dir)
    calls = count_forwards(module.model.query_model)

    def recorded(encode, inputs, state, *rest):
        events.append("kept" if isinstance(state, torch.Tensor) else len(calls))
        original(encode, inputs, state, *rest)

    monkeypatch.setattr(grad_cache, "replay", recorded)
    chunks = CHUNKS.model_copy(update={"keep_last": 2})  # queries 2 chunks, passages 3
    with_grad_cache(module.eval(), chunks)(**batch).backward()
    # 4 kept graphs (both query chunks, the last 2 passage chunks), then the first passage
    # chunk, encoded again only after them: 5 first-pass forwards had run
    assert events == ["kept"] * 4 + [5]


class TableSizedTensors(TorchDispatchMode):
    """Counts the new dense tensors of ``shape`` that a step's operations produce (in-place
    results and views are not new memory)."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.shape, self.made = tuple(shape), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        new = not func.is_view and not func._schema.is_mutable
        if new and isinstance(out, torch.Tensor) and out.layout == torch.strided:
            if tuple(out.shape) == self.shape:
                self.made.append(str(func))
        return out


def test_a_step_makes_one_table_sized_embedding_gradient_however_many_chunks(tiny_bert_dir):
    """Each chunk's backward yields the word-embedding rows its tokens touched, not a
    vocabulary-sized gradient: one dense table gradient a step, not one per chunk."""
    module, batch, _ = dual_case(tiny_bert_dir)
    tables = [m for m in module.modules() if isinstance(m, nn.Embedding)]
    words = module.model.query_model.embeddings.word_embeddings
    chunks = CHUNKS.model_copy(update={"keep_last": 1})  # 5 chunks, 3 of them encoded twice
    with TableSizedTensors(words.weight.shape) as counted:
        with_grad_cache(module.eval(), chunks)(**batch).backward()
    assert len(counted.made) == 1, counted.made
    assert words.weight.grad.layout == torch.strided
    assert not any(table.sparse for table in tables)  # dense again after the step


def test_chunks_drop_trailing_padding_only():
    right = {"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0], [8, 9, 9, 9]])}
    right["attention_mask"] = (right["input_ids"] != 0).long()
    first, last = split_rows(right, 2)
    assert first["input_ids"].tolist() == [[5, 6], [7, 0]]
    assert first["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert last["input_ids"].tolist() == [[8, 9, 9, 9]]
    left = {"input_ids": torch.tensor([[0, 0, 5]]), "attention_mask": torch.tensor([[0, 0, 1]])}
    assert trim_padding(left) is left  # leading padding stays: positions must not move


def test_chunks_hold_texts_of_similar_length_and_come_back_in_batch_order():
    lengths = [4, 1, 3, 1, 4, 2]
    ids = torch.tensor(
        [[10 * r + c + 1 if c < n else 0 for c in range(4)] for r, n in enumerate(lengths)]
    )
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    chunks, order = length_chunks(inputs, 2)
    # in batch order every chunk pairs a long row with a short one and keeps its width
    assert [c["input_ids"].shape[1] for c in split_rows(inputs, 2)] == [4, 3, 4]
    assert [c["input_ids"].shape[1] for c in chunks] == [1, 3, 4]
    assert [c["attention_mask"].sum().item() for c in chunks] == [2, 5, 8]  # no row lost
    rows = torch.cat([c["input_ids"][:, 0] for c in chunks])  # each row's first id names it
    assert in_batch_order(rows, order).tolist() == ids[:, 0].tolist()


# --- DeepSpeed -------------------------------------------------------------------------------


def engine_step(module: nn.Module, batch: dict, stage: int, accumulation: int = 1) -> dict:
    """``engine(**batch); engine.backward(loss); engine.step()`` as loop.run_steps runs it,
    once per micro-step (the same batch each), with a plain torch optimizer (nothing to
    compile) and the loop's default clipping. Gradients are read at the last micro-step."""
    import deepspeed
    from deepspeed.utils import safe_get_full_grad

    config = {
        "train_micro_batch_size_per_gpu": batch["query_inputs"]["input_ids"].shape[0],
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,  # SGD under ZeRO
        "steps_per_print": 10**6,
    }
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    engine.eval()  # no dropout: the whole batch is the reference
    for _ in range(accumulation - 1):
        engine.backward(engine(**batch))
        engine.step()  # not a boundary: DeepSpeed only counts the micro-step
    loss = engine(**batch)
    engine.backward(loss)
    grads = {n: safe_get_full_grad(p) for n, p in engine.module.named_parameters()}
    grads = {n: g.detach().clone() for n, g in grads.items() if g is not None}
    engine.step()
    params = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    return {"loss": loss.detach().clone(), "grads": grads, "params": params}


# (ZeRO stage, gradient accumulation steps)
ENGINE_CASES = [(0, 1), (0, 2), (2, 1), (2, 2)]


def join_deepspeed(rank: int, world: int) -> None:
    """DeepSpeed's view of the gloo group run_on_ranks made (it reads these variables)."""
    import deepspeed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    skip_cpu_shm_allreduce()
    deepspeed.init_distributed(dist_backend="gloo")


def _one_rank_engines(folder: str, rank: int, out: str) -> None:
    torch.set_num_threads(1)
    join_deepspeed(rank, 1)
    results = {}
    for stage, accumulation in ENGINE_CASES:
        for cache in (False, True):
            model = dual_encoder(Path(folder), torch.float32)
            module = DualTrainingModule(model, InfoNCELoss(0.05, "cosine"))
            module = with_grad_cache(module, CHUNKS) if cache else module
            step = engine_step(module, dual_batch(model), stage, accumulation)
            results[stage, accumulation, cache] = step
    results["start"] = dual_encoder(Path(folder), torch.float32).state_dict()
    torch.save(results, Path(out) / "engines.pt")


needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


@pytest.fixture(scope="module")
def one_rank_engines(tiny_bert_dir, tmp_path_factory) -> dict:
    """Plain and cached engine steps of ENGINE_CASES, in one spawned process (its own gloo
    group, so none is left in the test process)."""
    out = tmp_path_factory.mktemp("grad-cache-engines")
    run_on_ranks(partial(_one_rank_engines, str(tiny_bert_dir)), 1, str(out))
    return torch.load(out / "engines.pt")


@needs_gloo
@pytest.mark.parametrize("stage,accumulation", ENGINE_CASES, ids=lambda v: str(v))
def test_deepspeed_step_matches_the_plain_engine_step(one_rank_engines, stage, accumulation):
    """Also over 2 micro-steps, where the engine scales each backward by 1/2: a surrogate that
    ignored its incoming gradient would give twice the plain gradient."""
    plain = one_rank_engines[stage, accumulation, False]
    cached = one_rank_engines[stage, accumulation, True]
    torch.testing.assert_close(cached["loss"], plain["loss"], rtol=0, atol=1e-6)
    assert_same_gradients(cached["grads"], plain["grads"], **F32)
    # the engine clipped and stepped both alike, and the step moved the weights
    start = {f"model.{k}": v for k, v in one_rank_engines["start"].items()}
    moved = max(float((value - start[k]).abs().max()) for k, value in plain["params"].items())
    assert moved > 1e-3
    for name, value in cached["params"].items():
        torch.testing.assert_close(value, plain["params"][name], rtol=0, atol=1e-6, msg=name)


# --- two workers, cross-batch negatives --------------------------------------------------------

WORLD = 2
LOCAL = len(QUERIES) // WORLD
LOCAL_CHUNKS = GradCacheConfig(query_chunk=2, passage_chunk=4)  # 3 = 2+1, 6 = 4+2


def _cross_batch_module(folder: Path, dtype: torch.dtype):
    model = dual_encoder(folder, dtype).eval()
    loss = CrossBatchInfoNCELoss(temperature=0.05, similarity="cosine")
    return model, with_grad_cache(DualTrainingModule(model, loss), LOCAL_CHUNKS)


def _two_rank_worker(folder: str, rank: int, out: str) -> None:
    torch.set_num_threads(1)
    local = slice(rank * LOCAL, (rank + 1) * LOCAL)
    model, module = _cross_batch_module(Path(folder), torch.float64)
    loss = module(**dual_batch(model, local))
    loss.backward()
    grads, mean_loss = gradients(module), loss.detach().clone()
    for value in [mean_loss, *grads.values()]:  # what DDP / DeepSpeed apply: the mean
        dist.all_reduce(value)
        value /= WORLD
    join_deepspeed(rank, WORLD)
    model, module = _cross_batch_module(Path(folder), torch.float32)
    engine = engine_step(module, dual_batch(model, local), stage=2)
    torch.save({"loss": mean_loss, "grads": grads, "engine": engine}, Path(out) / f"rank{rank}.pt")


def full_batch_step(folder: Path, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
    """One process, the concatenated batch, plain InfoNCE (what cross-batch must equal)."""
    model = dual_encoder(folder, dtype).eval()
    module = DualTrainingModule(model, InfoNCELoss(temperature=0.05, similarity="cosine"))
    loss = module(**dual_batch(model))
    loss.backward()
    return loss.detach(), gradients(module)


@pytest.mark.slow  # two gloo workers, ~9 s; the one-process grad-cache tests stay default
@needs_gloo
def test_two_workers_with_cross_batch_negatives_match_one_process(tiny_bert_dir, tmp_path):
    run_on_ranks(partial(_two_rank_worker, str(tiny_bert_dir)), WORLD, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    want_loss, want = full_batch_step(tiny_bert_dir, torch.float64)
    want_loss32, want32 = full_batch_step(tiny_bert_dir, torch.float32)
    for got in ranks:
        torch.testing.assert_close(got["loss"], want_loss, rtol=0, atol=1e-12)
        assert_same_gradients(got["grads"], want, **F64)
        # ZeRO-2 also reports a zero gradient for parameters no loss reached (the pooler)
        engine = got["engine"]["grads"]
        assert all(not engine[n].any() for n in engine.keys() - want32.keys())
        assert_same_gradients({n: engine[n] for n in want32}, want32, **F32)
    mean = sum(float(r["engine"]["loss"]) for r in ranks) / WORLD
    assert abs(mean - float(want_loss32)) < 1e-5


# --- config and wiring -------------------------------------------------------------------------


def write_config(tmp_path: Path, folder: Path, **extra) -> Path:
    (tmp_path / "tables").mkdir(exist_ok=True)
    config = {
        "model": str(folder),
        "output_dir": str(tmp_path / "out"),
        "data": {"tables": str(tmp_path / "tables")},
        **extra,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_build_switches_to_the_cached_module_and_says_so(tmp_path, tiny_bert_dir, caplog):
    caplog.set_level(logging.INFO, logger="retrieval.training.loop")
    chunks = {"query_chunk": 4, "passage_chunk": 5}
    config = load_train_config(write_config(tmp_path, tiny_bert_dir, grad_cache=chunks))
    module, _, models = build(config, None, None)
    assert isinstance(module, CachedDualTrainingModule) and module.model is models["model"]
    assert "grad cache: query chunk 4, passage chunk 5" in caplog.messages
    joint = load_train_config(
        write_config(tmp_path, tiny_bert_dir, kind="joint", cross_model=str(tiny_bert_dir),
                     grad_cache={**chunks, "pair_chunk": 6})
    )  # fmt: skip
    module, _, _ = build(joint, None, None)
    assert isinstance(module, CachedJointTrainingModule)
    assert "grad cache: query chunk 4, passage chunk 5, pair chunk 6" in caplog.messages
    plain = load_train_config(write_config(tmp_path, tiny_bert_dir))
    assert plain.grad_cache is None and type(build(plain, None, None)[0]) is DualTrainingModule


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            {"kind": "cross"},
            "key 'grad_cache': kind cross does not take it (kinds dual, joint only)",
        ),
        (
            {"kind": "pair", "loss": "simcse_unsup"},
            "key 'grad_cache': kind pair does not take it",
        ),
        (
            {"grad_cache": {"pair_chunk": 4}},
            "key 'grad_cache.pair_chunk': kind dual does not take it (kind joint only)",
        ),
        ({"grad_cache": {"query_chunk": 0}}, "key 'grad_cache.query_chunk'"),
    ],
)
def test_config_refuses_what_grad_cache_cannot_do(tmp_path, extra, message):
    path = write_config(tmp_path, tmp_path, **{"grad_cache": {}, **extra})
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_zero3_is_refused_in_one_line_and_zero2_is_not(tmp_path):
    configs = {}
    for stage in (2, 3):
        ds = tmp_path / f"zero{stage}.json"
        ds.write_text(f'{{"zero_optimization": {{"stage": {stage}}}}}')
        path = write_config(tmp_path, tmp_path, grad_cache={}, deepspeed=str(ds))
        configs[stage] = load_train_config(path)
    assert deepspeed_config(configs[2])["zero_optimization"] == {"stage": 2}
    with pytest.raises(ConfigError, match="^grad_cache does not work with ZeRO stage 3"):
        deepspeed_config(configs[3])
    no_cache = configs[3].model_copy(update={"grad_cache": None})
    assert deepspeed_config(no_cache)["zero_optimization"] == {"stage": 3}


# --- the training loop -------------------------------------------------------------------------


def _train(config_path: str, rank: int, out: str) -> None:
    from retrieval.training.loop import train_worker

    torch.set_num_threads(1)
    join_deepspeed(rank, 1)  # as a launcher would (train_worker joins the group it finds)
    train_worker(load_train_config(config_path))


LOOP_RUNS = {
    "dual": {"hard_negatives": 1, "grad_cache": {"query_chunk": 3, "passage_chunk": 5}},
    "joint": {"group_size": 2, "grad_cache": {"query_chunk": 3, "passage_chunk": 5,
                                              "pair_chunk": 5}},
}  # fmt: skip


@needs_gloo
@pytest.mark.parametrize("kind", sorted(LOOP_RUNS))
def test_the_loop_trains_with_grad_cache(tmp_path, scifact_tables, tiny_bert_dir, kind):
    """train_worker end to end (DeepSpeed ZeRO 0, a checkpoint, export) with a cached module."""
    config = {
        "kind": kind, "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "out"),
        "data": {"tables": str(scifact_tables), "max_examples": 64},
        "batch_size": 8, "max_steps": 3, "checkpoint_every": 2, "log_every": 1,
        "random_negatives": True,
        "model_settings": {"query_max_len": 24, "passage_max_len": 48},
        **LOOP_RUNS[kind],
    }  # fmt: skip
    if kind == "joint":  # the re-ranker's keys
        config.update(cross_model=str(tiny_bert_dir), cross_max_len=64)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    run_on_ranks(partial(_train, str(path)), 1, str(tmp_path))
    out = tmp_path / "out"
    summary = json.loads((out / "train_summary.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 3 and 0 < summary["final_loss"] < 100
    assert [r["step"] for r in log] == [1, 2, 3]
    if kind == "dual":  # the loss the engine's module holds still reports its candidates
        assert log[-1]["candidates_per_query"] == 8 * 2
    start = dual_encoder(tiny_bert_dir, torch.float32).state_dict()
    trained = dual_encoder(out / "model", torch.float32).state_dict()
    assert max(float((trained[k] - start[k]).abs().max()) for k in start) > 1e-6
