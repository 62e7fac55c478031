"""Export under bf16: the saved weights are the optimizer's float32 master copy, for ZeRO
stages 0-3 on two gloo ranks. The reference is read back from DeepSpeed's own checkpoint files
(the ``fp32_groups`` of ZeRO 0's optimizer state; ``zero_to_fp32``'s consolidation for ZeRO
1-3), not from the code under test; the saved weights must also differ from the bf16 module
copy, which is their rounding."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from retrieval.losses import InfoNCELoss
from retrieval.models import DualEncoder
from retrieval.training.loop import export, weights_note
from retrieval.training.modules import DualTrainingModule
from tests.helpers_dist import run_on_ranks
from tests.retrieval.training.grad_cache_cases import dual_batch
from tests.retrieval.training.test_grad_cache import join_deepspeed

STAGES = (0, 1, 2, 3)
WORLD = 2
PREFIX = "model.query_model."  # the shared tower inside DualTrainingModule


def bf16_config(stage: int, batch: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": batch,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": stage},
        "steps_per_print": 10**6,
    }


def reference_masters(engine, ckpt: Path, stage: int) -> dict[str, torch.Tensor]:
    """The float32 weights as DeepSpeed's checkpoint files hold them, by parameter name."""
    engine.save_checkpoint(str(ckpt), tag="t")
    dist.barrier()
    if stage == 0:
        state = torch.load(ckpt / "t" / "mp_rank_00_model_states.pt", weights_only=False)
        names = [n for n, p in engine.module.named_parameters() if p.requires_grad]
        return dict(zip(names, state["optimizer"]["fp32_groups"][0]))
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="t")


def module_copy(engine, stage: int) -> dict[str, torch.Tensor]:
    """The engine module's own (bf16) weights; ZeRO-3 gathers its partitions."""
    import deepspeed

    params = list(engine.module.named_parameters())
    enabled = stage == 3
    with deepspeed.zero.GatheredParameters([p for _, p in params], enabled=enabled):
        return {n: p.detach().clone().cpu() for n, p in params}


def _train_and_export(folder: str, rank: int, out: str) -> None:
    import deepspeed

    torch.set_num_threads(1)
    join_deepspeed(rank, WORLD)
    results = {}
    for stage in STAGES:
        torch.manual_seed(0)
        dual = DualEncoder.from_pretrained(Path(folder), temperature=0.05)
        module = DualTrainingModule(dual, InfoNCELoss(0.05, "cosine"))
        batch = dual_batch(dual)
        size = batch["query_inputs"]["input_ids"].shape[0]
        optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
        engine, *_ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=bf16_config(stage, size)
        )
        for _ in range(3):
            engine.backward(engine(**batch))
            engine.step()
        target = Path(out) / f"zero{stage}"
        reference = reference_masters(engine, target / "ckpt", stage)
        bf16 = module_copy(engine, stage)
        export(engine, {"model": dual}, target, {"zero_optimization": {"stage": stage}}, rank,
               {"model": "card"})  # fmt: skip
        if rank == 0:
            results[stage] = {"reference": reference, "bf16": bf16}
        dist.barrier()
    if rank == 0:
        torch.save(results, Path(out) / "results.pt")


needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


@pytest.fixture(scope="module")
def exported(tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("master-weights")
    run_on_ranks(partial(_train_and_export, str(tiny_bert_dir)), WORLD, str(out))
    return out, torch.load(out / "results.pt")


@needs_gloo
@pytest.mark.parametrize("stage", STAGES)
def test_bf16_export_writes_the_float32_master_weights(exported, stage):
    out, results = exported
    saved = load_file(out / f"zero{stage}" / "model" / "model.safetensors")
    reference, bf16 = results[stage]["reference"], results[stage]["bf16"]
    trained = {n[len(PREFIX) :]: t for n, t in reference.items() if n.startswith(PREFIX)}
    assert trained.keys() <= saved.keys() and len(trained) > 10
    for name, master in trained.items():
        assert saved[name].dtype == torch.float32, name
        assert torch.equal(saved[name], master.float()), name
        module = bf16[PREFIX + name]
        assert module.dtype == torch.bfloat16
        assert torch.equal(saved[name].bfloat16(), module), name  # the module copy is its rounding
    lost = [n for n in trained if not torch.equal(saved[n], bf16[PREFIX + n].float())]
    assert len(lost) > 0.9 * len(trained), "the saved weights should not be bf16 values"


@needs_gloo
def test_the_exported_bf16_model_reloads_in_float32(exported):
    out, results = exported
    folder = out / "zero2" / "model"
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    reloaded = DualEncoder.from_pretrained(folder)
    masters = results[2]["reference"]
    for name, param in reloaded.query_model.named_parameters():
        assert param.dtype == torch.float32
        torch.testing.assert_close(param.detach(), masters[PREFIX + name].float(), rtol=0, atol=0)


def test_the_model_card_names_the_weights_precision():
    assert weights_note("fp32") == "float32 (trained in float32)"
    assert "master copy" in weights_note("bf16") and "bf16" in weights_note("bf16")
