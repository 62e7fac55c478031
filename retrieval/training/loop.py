"""The one training loop, run in every worker: a DeepSpeed engine over a model+loss module,
seeded deterministic batches, checkpoints every N steps, HF export of the final model.

Launchers (Ray Train, torchrun, a plain process) only set up the process group around it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pyarrow.compute as pc
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from retrieval import distributed
from retrieval.distributed import free_port
from retrieval.losses import MoCoQueue, build_loss
from retrieval.losses.arguments import settable
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import DualEncoder
from retrieval.tables.store import atomic_dir, table_exists, write_json_atomic
from retrieval.training import checkpoints
from retrieval.training.cached_modules import with_grad_cache
from retrieval.training.collators import CrossCollator, DualCollator, JointCollator
from retrieval.training.config import TrainConfig, registered_loss
from retrieval.training.evaluation import EvalDuringTraining
from retrieval.training.evaluation.during_training import promote_best
from retrieval.training.evaluation.during_training import refuse_zero3 as refuse_zero3_evaluation
from retrieval.training.examples import ResolvedExamples, load_examples, resolve_examples
from retrieval.training.grad_cache import refuse_zero3
from retrieval.training.master_weights import master_weights, weights_swapped_in
from retrieval.training.model_card import card_text
from retrieval.training.modules import (
    CrossTrainingModule,
    DualTrainingModule,
    JointTrainingModule,
)
from retrieval.training.negatives import check_negatives
from retrieval.training.no_duplicates import NoDuplicatesStepSampler
from retrieval.training.optimizer import learning_rates, param_groups
from retrieval.training.pair_training import build_pair_training, open_pairs, pair_card_facts
from retrieval.training.pairs import prepare_pairs
from retrieval.training.passages import PassageStore
from retrieval.training.retromae.build import (
    build_retromae_training,
    passage_rows,
    retromae_card_facts,
)
from retrieval.training.sampler import StepSampler
from retrieval.training.train_log import IntervalMeans, TrainLog

logger = logging.getLogger(__name__)


def data_dir(config: TrainConfig) -> Path:
    return Path(config.output_dir) / "data"


def skip_cpu_shm_allreduce() -> None:
    """DeepSpeed's CPU accelerator JIT-compiles a shared-memory allreduce the first time a
    process starts its communication backend: a minute of a fresh machine's 2 cores, and a build
    killed midway leaves a lock at which every later run waits forever. It only speeds up CPU
    allreduce, which RQA's CPU runs do through gloo: it is not built."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def init_distributed(use_gpu: bool) -> tuple[int, int]:
    """Join the process group the launcher prepared, or make a one-process group."""
    import deepspeed

    skip_cpu_shm_allreduce()
    use_gpu = use_gpu and torch.cuda.is_available()  # a declared GPU a machine lacks: the CPU
    if not dist.is_initialized():
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")
    return dist.get_rank(), dist.get_world_size()


DEFAULT_DEEPSPEED = {
    "gradient_accumulation_steps": 1,
    "gradient_clipping": 1.0,
    "zero_optimization": {"stage": 0},
    "steps_per_print": 1_000_000,
}


def deepspeed_config(config: TrainConfig) -> dict:
    ds = json.loads(Path(config.deepspeed).read_text()) if config.deepspeed else DEFAULT_DEEPSPEED
    ds = dict(ds)
    ds["train_micro_batch_size_per_gpu"] = config.batch_size
    ds.pop("train_batch_size", None)  # DeepSpeed derives it from micro batch x GA x world
    if getattr(config, "grad_cache", None) is not None:  # kinds dual and joint
        refuse_zero3(ds)
    return ds


def checkpoint_activations(models: dict) -> None:
    """HF gradient checkpointing on every transformer the module trains (each tower once)."""
    towers = []
    for model in models.values():
        towers += (
            [model.model] if hasattr(model, "model") else [model.query_model, model.passage_model]
        )
    for tower in {id(t): t for t in towers}.values():
        enable = getattr(tower, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5.25; the old name goes in v6
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            tower.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )


def build(config: TrainConfig, store: PassageStore, examples: ResolvedExamples):
    """The model+loss module, its collator, and the models to export by folder name; with
    ``gradient_checkpointing``, every encoder recomputes its activations in backward; with
    ``grad_cache``, the module encodes its batch in chunks (retrieval/training/grad_cache.py)."""
    module, collate, models = _build(config, store, examples)
    if config.gradient_checkpointing:
        checkpoint_activations(models)
    chunks = getattr(config, "grad_cache", None)  # kinds dual and joint
    if chunks is not None:
        module = with_grad_cache(module, chunks)
        if distributed.rank() == 0:
            logger.info("grad cache: %s", chunks.summary())
    return module, collate, models


def _build(config: TrainConfig, store: PassageStore, examples: ResolvedExamples):
    if config.kind == "pair":  # sentence pairs: no corpus; ``examples`` is the PairStore
        return build_pair_training(config, examples)
    if config.kind == "retromae":  # corpus passages: ``examples`` are their rows
        return build_retromae_training(config, store)
    if config.kind == "cross":
        model = CrossEncoder.from_pretrained(config.model, max_len=config.cross_max_len)
        loss = build_loss(config.loss, **config.loss_args)
        collate = CrossCollator(
            model, examples, store, config.group_size, config.seed, config.random_negatives,
            reads_teacher_scores(config),
        )  # fmt: skip
        return CrossTrainingModule(model, loss, config.group_size), collate, {"model": model}
    dual = DualEncoder.from_pretrained(config.model, **config.model_settings.overrides())
    if config.kind == "joint":
        cross = CrossEncoder.from_pretrained(config.cross_model, max_len=config.cross_max_len)
        loss = build_loss(registered_loss(config.loss, config.kind), **config.loss_args)
        collate = JointCollator(
            dual, cross, examples, store, config.group_size, config.seed, config.random_negatives
        )
        module = JointTrainingModule(dual, cross, loss, config.group_size)
        return module, collate, {"model": dual, "cross_model": cross}
    model_args = {"temperature": dual.settings.temperature, "similarity": dual.settings.similarity}
    # The model's scoring for the losses that take it (margin_mse scores with the model itself).
    model_args = {k: v for k, v in model_args.items() if k in settable(config.loss)}
    loss = build_loss(config.loss, **{**model_args, **config.loss_args})
    queue = None
    if config.queue is not None:
        queue = MoCoQueue(config.queue_rows(distributed.world_size()), dual.dim)
    collate = DualCollator(
        dual, examples, store, config.hard_negatives, config.seed, config.random_negatives,
        config.mask_false_negatives, reads_teacher_scores(config),
    )  # fmt: skip
    return DualTrainingModule(dual, loss, queue), collate, {"model": dual}


def reads_teacher_scores(config: TrainConfig) -> bool:
    """A run that distils the teacher scores stored with its examples: a dual one the
    re-ranker's (margin_mse), a cross one the retriever's (listwise_ce_kl); train_joint takes
    its teacher's scores from the live re-ranker instead."""
    return (config.kind, config.loss) in {("dual", "margin_mse"), ("cross", "listwise_ce_kl")}


def build_sampler(config: TrainConfig, examples, world: int) -> StepSampler:
    """The step sampler: with ``no_duplicates`` (kinds dual and joint), clean global batches."""
    if getattr(config, "no_duplicates", False):
        return NoDuplicatesStepSampler(
            examples.queries, examples.positives, config.batch_size, world, config.seed
        )
    return StepSampler(len(examples), config.batch_size, world, config.seed)


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: {n: t.to(device) for n, t in v.items()} for k, v in batch.items()}


def train_worker(config: TrainConfig) -> dict:
    """Train in this process as one rank of the group; rank 0 writes ``output_dir/model``."""
    import deepspeed

    rank, world = init_distributed(config.use_gpu)
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    if rank == 0:  # the others wait, then open what rank 0 wrote
        prepare_data(config)
    dist.barrier()
    store, examples = open_data(config)
    module, collate, models = build(config, store, examples)
    sampler = build_sampler(config, examples, world)
    total = sampler.total_steps(config.epochs, config.max_steps)
    ds_config = deepspeed_config(config)
    head_lr = getattr(config, "head_lr", None)  # kinds cross, joint and retromae
    cross_lr = getattr(config, "cross_lr", None)  # kind joint
    groups = param_groups(module, config.lr, config.weight_decay, head_lr, cross_lr)
    optimizer = scheduler = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(groups)
        scheduler = linear_schedule(optimizer, total, config.warmup_ratio)
    # A DeepSpeed optimizer from the JSON gets the groups only for head_lr or cross_lr (their lr
    # then wins over the JSON's); otherwise it takes every parameter at the JSON's lr, as before.
    engine, _, _, scheduler = deepspeed.initialize(
        model=module,
        model_parameters=groups if optimizer is None and len(groups) > 1 else None,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=ds_config,
    )
    ckpt_dir = out / "checkpoints"
    start = checkpoints.resume(engine, ckpt_dir, rank)
    evals = evaluation_during(config, engine, models, ds_config, rank)
    summary = run_steps(engine, collate, sampler, config, start, total, rank, world, evals)
    summary["precision"] = training_precision(engine)
    summary["training_module"] = type(engine.module).__name__  # e.g. the grad-cache twin
    if evals is not None and rank == 0:
        summary["evaluation"] = evals.summary()
    if start < total:
        checkpoints.save(engine, ckpt_dir, total, rank, config.keep_checkpoints)
    if start < total or not (out / "model").is_dir():  # a finished run is not exported again
        cards = model_cards(config, summary, world)
        if evals is not None and evals.select == "best":
            if rank == 0:
                promote_best(out, list(models), cards)
        else:
            export(engine, models, out, ds_config, rank, cards)
    if rank == 0:
        write_json_atomic(out / "train_summary.json", summary)
    dist.barrier()
    return summary


def evaluation_during(config, engine, models, ds_config, rank) -> EvalDuringTraining | None:
    """The dev-set evaluation of ``config.evaluation`` (None: off); with ``select: best`` it
    exports each new best step under ``output_dir/best`` as export() writes the last."""
    if config.evaluation is None:
        return None
    refuse_zero3_evaluation(ds_config)
    out = Path(config.output_dir)

    def export_to(folder: Path) -> None:
        cards = {name: f"# {out.name}: best dev step so far (see step.json)\n" for name in models}
        export(engine, models, folder, ds_config, rank, cards)

    return EvalDuringTraining(config, engine.module, models["model"], rank, export_to)


def open_data(config: TrainConfig):
    """``(passages, examples)`` every worker reads; pair training reads its pairs alone."""
    if config.kind == "pair":
        return None, open_pairs(config)
    store = PassageStore(Path(config.data.tables) / "corpus", data_dir(config) / "hf_cache")
    if config.kind == "retromae":
        return store, passage_rows(config, store)
    return store, ResolvedExamples(data_dir(config) / "examples")


def prepare_data(config: TrainConfig) -> None:
    """Resolve examples to corpus rows and build the memory-mapped corpus cache, once (pair
    training: its pairs table and their cache)."""
    if config.kind == "pair":
        prepare_pairs(config)
        open_pairs(config)
        return
    if config.kind == "retromae":  # the corpus cache alone: no examples, no negatives
        PassageStore(Path(config.data.tables) / "corpus", data_dir(config) / "hf_cache")
        return
    if table_exists(data_dir(config) / "examples"):
        return
    check_negatives(config)
    tables = Path(config.data.tables)
    examples = load_examples(tables, config.data.split, config.data.examples)
    if config.data.max_examples:
        examples = examples.slice(0, config.data.max_examples)
    if reads_teacher_scores(config):  # those without negatives are left out (check_negatives)
        examples = examples.filter(pc.greater(pc.list_value_length(examples["negatives"]), 0))
    source = str(config.data.examples or tables / f"examples-{config.data.split}")
    resolve_examples(examples, tables / "corpus", data_dir(config) / "examples", source,
                     reads_teacher_scores(config))  # fmt: skip
    PassageStore(tables / "corpus", data_dir(config) / "hf_cache")


def run_steps(engine, collate, sampler, config, start, total, rank, world, evals=None) -> dict:
    """Train steps ``start..total``; every ``log_every`` steps (and at the end) log the means
    of the loss and its parts over the steps since the last record; ``evals`` (an
    EvalDuringTraining, or None) evaluates after the steps it is due at, before the
    checkpoint of the same step, so a resumed run has evaluated what its checkpoint holds."""
    ckpt_dir = Path(config.output_dir) / "checkpoints"
    log = TrainLog(Path(config.output_dir)) if rank == 0 else None
    engine.train()
    started, seen, last_loss = time.perf_counter(), 0, float("nan")
    means = IntervalMeans()
    bar = tqdm(total=total, initial=start, desc=f"train {config.kind}", disable=rank != 0)
    for step in range(start, total):
        batch = to_device(collate(sampler.indices(step, rank), step), engine.device)
        loss = engine(**batch)
        engine.backward(loss)
        engine.step()
        last_loss = loss.item()
        means.add({"loss": last_loss, **loss_parts(engine.module)})
        seen += config.batch_size * world
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{last_loss:.4f}", ex_per_s=f"{rate:.1f}")
        bar.update(1)
        if log is not None:
            log.step_loss(step + 1, last_loss)
        if (step + 1) % config.log_every == 0 or step + 1 == total:
            mean = means.take(engine.device)  # every rank: the mean is over the ranks too
            if rank == 0:
                record = {
                    "step": step + 1,
                    **mean,
                    "examples_per_s": rate,
                    **learning_rates(engine.optimizer.param_groups),
                    "candidates_per_query": getattr(
                        engine.module.loss, "last_num_candidates", None
                    ),
                }
                logger.info("step %d/%d loss %.4f %.1f examples/s", step + 1, total,
                            mean["loss"], rate)  # fmt: skip
                log.write(record)
        if evals is not None:
            evals.after_step(step + 1, total, log)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
            checkpoints.save(engine, ckpt_dir, step + 1, rank, config.keep_checkpoints)
    bar.close()
    if log is not None:
        log.close()
    elapsed = time.perf_counter() - started
    return {
        "steps": total,
        "resumed_from": start,
        "final_loss": last_loss,
        "examples_per_s": seen / elapsed if seen else None,
        "train_seconds": elapsed,
        "world_size": world,
    }


def loss_parts(module) -> dict[str, float]:
    """The terms of a composite loss after its last call (a loss's ``last_parts``, e.g.
    JointListwiseLoss's KL and listwise terms), as ``loss/<part>`` log keys."""
    parts = getattr(getattr(module, "loss", None), "last_parts", None) or {}
    return {f"loss/{name}": float(value) for name, value in parts.items()}


def export(engine, models: dict, out: Path, ds_config: dict, rank: int, cards: dict) -> None:
    """Rank 0 writes each trained model as an HF folder (+ sentence-transformers files) under
    ``out``, atomically. Under bf16/fp16 the weights written are the optimizer's float32
    master copy, not the module's rounded one (master_weights.py); every rank joins that
    gather, as under ZeRO-3 every rank joins the gather of the partitioned weights.
    The dual encoder's folder (``model``) is written last: its presence marks a finished run."""
    masters = master_weights(engine)
    if masters is not None:
        if rank == 0:
            with weights_swapped_in(engine.module, masters):
                _save_all(models, out, cards)
    elif ds_config.get("zero_optimization", {}).get("stage", 0) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
            if rank == 0:
                _save_all(models, out, cards)
    elif rank == 0:
        _save_all(models, out, cards)


def _save_all(models: dict, out: Path, cards: dict) -> None:
    for name in sorted(models, key=lambda n: n == "model"):
        with atomic_dir(out / name) as tmp:
            models[name].save(tmp)
            (tmp / "README.md").write_text(cards[name], encoding="utf-8")


def training_precision(engine) -> str:
    """``bf16``, ``fp16`` or ``fp32``: the precision the engine's module computes in."""
    return "bf16" if engine.bfloat16_enabled() else "fp16" if engine.fp16_enabled() else "fp32"


def weights_note(precision: str) -> str:
    """What a model card says of the saved weights' precision."""
    if precision == "fp32":
        return "float32 (trained in float32)"
    return f"float32: the optimizer's master copy (trained in {precision} mixed precision)"


def evaluation_facts(summary: dict) -> dict:
    """The model card's lines on the dev evaluation: which step was exported, and its metric."""
    found = summary.get("evaluation")
    if not found or found["best_step"] is None:
        return {}
    best = f"{found['metric']} {found['best_value']:.4f} at step {found['best_step']}"
    exported = "the best dev step" if found["select"] == "best" else "the last step"
    return {"exported weights": exported, "best dev step": best}


def model_cards(config: TrainConfig, summary: dict, world: int) -> dict[str, str]:
    """The README.md of each exported folder (``model``: the dual encoder, or the re-ranker of
    a cross run; ``cross_model``: the re-ranker of a joint run)."""
    weights = {"weights": weights_note(summary.get("precision", "fp32")),
               **evaluation_facts(summary)}  # fmt: skip
    if config.kind == "pair":
        facts = {**pair_card_facts(config, summary, world), **weights}
        return {"model": card_text("pair", facts, config.model, Path(config.output_dir).name)}
    if config.kind == "retromae":
        facts = {**retromae_card_facts(config, summary, world), **weights}
        return {"model": card_text("retromae", facts, config.model, Path(config.output_dir).name)}
    facts = {
        "training kind": config.kind,
        "loss": config.loss,
        "loss arguments": config.loss_args,
        "training data": str(config.data.examples or config.data.tables),
        "split": config.data.split,
        "steps": summary["steps"],
        "epochs": config.epochs,
        "queries per step": f"{config.batch_size} x {world} workers",
        "learning rate": config.lr,
        "hard negatives" if config.kind == "dual" else "group size": (
            config.hard_negatives if config.kind == "dual" else config.group_size
        ),
        "queue of past passages": (
            config.queue_rows(world) if getattr(config, "queue", None) is not None else None
        ),
        "model settings": (  # the dual encoder's; a cross-encoder has none
            config.model_settings.overrides() if config.kind != "cross" else None
        ),
        "seed": config.seed,
        "final loss": summary["final_loss"],
        **weights,
    }
    facts = {k: v for k, v in facts.items() if v is not None}
    title = Path(config.output_dir).name
    if config.kind == "joint":
        return {
            "model": card_text("dual", facts, config.model, f"{title}: retriever"),
            "cross_model": card_text(
                "cross", facts, str(config.cross_model), f"{title}: re-ranker"
            ),
        }
    return {"model": card_text(config.kind, facts, config.model, title)}
