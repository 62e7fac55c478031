"""Checkpoints that let a killed run resume at the same step: the DeepSpeed engine state
(weights, optimizer, scheduler) plus each rank's torch RNG states (CPU, and CUDA when in use),
which DeepSpeed does not keep. Not here: when to save (loop.py), who may write (run_lock.py).

A checkpoint is complete or invisible. Step N is written into ``.step-N.tmp``, sealed with
``complete.json`` (every file and its size), renamed to ``step-N``, and only then named by
``latest`` (replaced atomically). A kill at any moment leaves ``latest`` on a complete checkpoint;
``resume`` still checks the seal and falls back to the newest complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from retrieval.tables.store import fsync_path, replace_dir, write_text_atomic

logger = logging.getLogger(__name__)
TAG = re.compile(r"^step-(\d+)$")
LEFTOVER = re.compile(r"^\.step-\d+\.(tmp|old-\w+)$")  # from a save that was killed
SEAL = "complete.json"
LATEST = "latest"


def _rng_name(rank: int) -> str:
    return f"rng-rank{rank}.pt"


def rng_state() -> dict:
    """This process's torch RNG states: CPU, and every CUDA device's once CUDA is in use."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if not cuda:
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() != len(cuda):
        logger.warning(
            "checkpoint has CUDA RNG states for %d devices, this process sees %d: not restored",
            len(cuda),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )
        return
    torch.cuda.set_rng_state_all(cuda)


def save(engine, ckpt_dir: Path, step: int, rank: int, keep: int) -> None:
    """Save step ``step`` (every rank calls this): written aside, sealed, renamed into place,
    then named by ``latest``; rank 0 then prunes to the newest ``keep``."""
    ckpt_dir = Path(ckpt_dir)
    tmp_tag = f".step-{step}.tmp"
    tmp = ckpt_dir / tmp_tag
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed save of this very step
    _barrier()
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), tmp / _rng_name(rank))
    engine.save_checkpoint(
        str(ckpt_dir), tag=tmp_tag, client_state={"step": step}, save_latest=False
    )
    _barrier()  # every rank's files are written (DeepSpeed's save ends with one too)
    if rank == 0:
        _seal(tmp, step)
        _publish(ckpt_dir, tmp, f"step-{step}")
        prune(ckpt_dir, keep)
    _barrier()


def prune(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints and whatever ``latest`` names; remove
    older ones and what killed saves left behind. Only the run's one writer may call this."""
    ckpt_dir = Path(ckpt_dir)
    named = read_latest(ckpt_dir)
    steps = _steps(ckpt_dir)
    complete = [s for s in steps if is_complete(ckpt_dir / f"step-{s}", s)]
    kept = set(complete[-keep:]) | ({named} if named is not None else set())
    newest = complete[-1] if complete else None
    for step in steps:
        older = newest is not None and step < newest
        if step not in kept and (step in complete or older):
            shutil.rmtree(ckpt_dir / f"step-{step}", ignore_errors=True)
    for path in ckpt_dir.iterdir():
        if LEFTOVER.match(path.name):
            shutil.rmtree(path, ignore_errors=True)


def resume(engine, ckpt_dir: Path, rank: int) -> int:
    """Load the newest complete checkpoint, if any; return the step to continue from."""
    ckpt_dir = Path(ckpt_dir)
    step = choose(ckpt_dir) if rank == 0 else None
    step = _broadcast(step)
    if step is None:
        return 0
    path, client_state = engine.load_checkpoint(str(ckpt_dir), tag=f"step-{step}")
    if path is None:
        raise RuntimeError(f"{ckpt_dir / f'step-{step}'}: DeepSpeed could not load it")
    if int(client_state["step"]) != step:
        raise RuntimeError(f"{path}: holds step {client_state['step']}, not {step}")
    rng_file = ckpt_dir / f"step-{step}" / _rng_name(rank)
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file))
    else:  # resumed on more ranks than it was saved from
        logger.warning("%s: no RNG state for rank %d; its random draws will differ", path, rank)
    logger.info("resumed from %s at step %d", path, step)
    return step


def choose(ckpt_dir: Path) -> int | None:
    """The step to resume from: the newest complete checkpoint (normally the one ``latest``
    names); logged when ``latest`` names one that is missing or incomplete."""
    if not ckpt_dir.is_dir():
        return None
    named = read_latest(ckpt_dir)
    complete = [s for s in _steps(ckpt_dir) if is_complete(ckpt_dir / f"step-{s}", s)]
    step = complete[-1] if complete else None
    if named is not None and named not in complete:
        fallback = f"step-{step}" if step is not None else "the start"
        logger.warning(
            "%s: latest names step-%d, which is missing or incomplete; resuming from %s",
            ckpt_dir,
            named,
            fallback,
        )
    elif (ckpt_dir / LATEST).exists() and named is None:
        logger.warning("%s: latest is unreadable; resuming from step-%s", ckpt_dir, step)
    return step


def is_complete(folder: Path, step: int) -> bool:
    """Whether ``folder`` holds a sealed checkpoint of ``step`` with every file at its size."""
    try:
        seal = json.loads((folder / SEAL).read_text())
        if seal["step"] != step:
            return False
        return all((folder / name).stat().st_size == size for name, size in seal["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_latest(ckpt_dir: Path) -> int | None:
    """The step ``latest`` names, or None if it is missing or not a step tag."""
    try:
        match = TAG.match((Path(ckpt_dir) / LATEST).read_text().strip())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _steps(ckpt_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in ckpt_dir.iterdir() if (m := TAG.match(p.name)))


def _seal(folder: Path, step: int) -> None:
    """Flush every file to disk and write the seal that lists them (a power cut, too, then
    leaves either no seal or a seal over complete files)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL):
        fsync_path(path)
        files[str(path.relative_to(folder))] = path.stat().st_size
    with open(folder / SEAL, "w") as f:
        json.dump({"step": step, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    fsync_path(folder)


def _publish(ckpt_dir: Path, tmp: Path, tag: str) -> None:
    """Rename the sealed folder into place (replacing an older copy of the step, one a resume
    could not use), then point ``latest`` at it with an atomic, durable replace."""
    replace_dir(tmp, ckpt_dir / tag)
    write_text_atomic(ckpt_dir / LATEST, tag, durable=True)
    fsync_path(ckpt_dir)


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _broadcast(step: int | None) -> int | None:
    """Rank 0's choice, on every rank (they must load the same step)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return step
    box = [step]
    dist.broadcast_object_list(box, src=0)
    return box[0]
