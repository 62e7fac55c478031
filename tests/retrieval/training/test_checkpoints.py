"""Checkpoints on a real DeepSpeed engine (one gloo process): a save killed at any file operation
leaves a resumable folder, prune keeps what ``latest`` names, resume falls back from a damaged
checkpoint, and the RNG states (CPU, CUDA) come back so the next random draw is the same."""

from __future__ import annotations

import builtins
import io
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from retrieval.training import checkpoints
from retrieval.training.loop import DEFAULT_DEEPSPEED, skip_cpu_shm_allreduce


class Crash(BaseException):
    """Stands for kill -9: not an Exception, so no handler on the way swallows it."""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A one-process group through a file (no port, no environment left to later tests)."""
    import deepspeed

    assert not dist.is_initialized()
    environ = dict(os.environ)
    store = tmp_path_factory.mktemp("dist") / "store"
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        config = {**DEFAULT_DEEPSPEED, "train_micro_batch_size_per_gpu": 1}
        skip_cpu_shm_allreduce()
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        yield engine
    finally:
        dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def train_step(engine) -> None:
    loss = engine(torch.randn(2, 4)).pow(2).mean()
    engine.backward(loss)
    engine.step()


def weights(engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


def scramble(engine) -> None:
    with torch.no_grad():
        for p in engine.module.parameters():
            p.fill_(7.0)


def assert_weights(engine, expected: dict[str, torch.Tensor]) -> None:
    for key, value in engine.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_resume_restores_weights_step_and_the_next_random_draw(engine, tmp_path):
    train_step(engine)
    checkpoints.save(engine, tmp_path, 1, rank=0, keep=2)
    saved, expected_draw = weights(engine), torch.rand(5)  # what an uninterrupted run does next
    train_step(engine)
    torch.manual_seed(1234)
    assert checkpoints.resume(engine, tmp_path, rank=0) == 1
    assert_weights(engine, saved)
    torch.testing.assert_close(torch.rand(5), expected_draw, rtol=0, atol=0)


def test_cuda_rng_states_are_saved_and_restored_when_cuda_is_in_use(engine, tmp_path, monkeypatch):
    """Without a GPU: CUDA as seen from torch.cuda is faked, two devices with their states."""
    states = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    checkpoints.save(engine, tmp_path, 3, rank=0, keep=2)
    assert checkpoints.resume(engine, tmp_path, rank=0) == 3
    assert len(restored) == 2
    for got, want in zip(restored, states):
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_random_draw_after_resume_equals_the_uninterrupted_one(engine, tmp_path):
    torch.cuda.manual_seed_all(0)
    torch.rand(1, device="cuda")  # CUDA in use, its generator moved on
    checkpoints.save(engine, tmp_path, 1, rank=0, keep=2)
    expected = torch.rand(5, device="cuda")
    torch.cuda.manual_seed_all(99)
    assert checkpoints.resume(engine, tmp_path, rank=0) == 1
    torch.testing.assert_close(torch.rand(5, device="cuda"), expected, rtol=0, atol=0)


class KillAt:
    """Counts the file operations of a save and raises Crash at operation ``at`` (never when
    ``at`` is None): opening a file for writing (left empty), writing a torch file (left half
    written), creating a folder, renaming or removing (not done)."""

    def __init__(self, monkeypatch, at: int | None):
        self.at, self.count, self.names, self.crashed = at, 0, [], "nothing (not killed)"
        real_open, real_save = builtins.open, torch.save
        real_rename, real_replace, real_rmtree = os.rename, os.replace, shutil.rmtree
        real_makedirs, real_mkdir, real_path_rename = os.makedirs, Path.mkdir, Path.rename

        def open_(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if any(c in mode for c in "wax"):
                self.tick(f"open {Path(file).name}", before=lambda: f.close())
            return f

        def save_(obj, f, *args, **kwargs):
            if not isinstance(f, str | os.PathLike):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()

            def half():
                with real_open(f, "wb") as out:
                    out.write(data[: len(data) // 2])

            self.tick(f"torch.save {Path(f).name}", before=half)
            with real_open(f, "wb") as out:
                out.write(data)

        def wrap(name, real, after=False):
            def op(*args, **kwargs):
                if after:
                    result = real(*args, **kwargs)
                    self.tick(f"{name} {Path(args[0]).name}")
                    return result
                self.tick(f"{name} {Path(args[0]).name}")
                return real(*args, **kwargs)

            return op

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(torch, "save", save_)
        monkeypatch.setattr(os, "rename", wrap("rename", real_rename))
        monkeypatch.setattr(os, "replace", wrap("replace", real_replace))
        monkeypatch.setattr(shutil, "rmtree", wrap("rmtree", real_rmtree))
        monkeypatch.setattr(os, "makedirs", wrap("makedirs", real_makedirs, after=True))
        monkeypatch.setattr(Path, "mkdir", wrap("mkdir", real_mkdir, after=True))
        monkeypatch.setattr(Path, "rename", wrap("rename", real_path_rename))

    def tick(self, name: str, before=None) -> None:
        if self.count == self.at:
            if before is not None:
                before()
            self.crashed = name
            raise Crash(name)
        self.count += 1
        self.names.append(name)


def test_a_save_killed_at_any_file_operation_leaves_a_resumable_checkpoint(
    engine, tmp_path, monkeypatch
):
    """Before the fix DeepSpeed rewrote ``latest`` in place: killed between its truncation and
    its write, ``latest`` was empty and resume failed in check_ckpt_list (issue 15)."""
    pristine = tmp_path / "pristine"
    train_step(engine)
    checkpoints.save(engine, pristine, 1, rank=0, keep=2)
    train_step(engine)
    checkpoints.save(engine, pristine, 2, rank=0, keep=2)
    step_2 = weights(engine)
    train_step(engine)
    step_3 = weights(engine)

    with monkeypatch.context() as patch:  # a dry run counts the operations of one save
        counter = KillAt(patch, at=None)
        checkpoints.save(engine, tmp_path / "dry", 3, rank=0, keep=2)
    assert counter.count >= 5, counter.names

    for at in range(counter.count + 1):
        ckpt_dir = tmp_path / f"killed-at-{at}"
        shutil.copytree(pristine, ckpt_dir)
        engine.module.load_state_dict(step_3)  # the state this save writes
        with monkeypatch.context() as patch:
            killer = KillAt(patch, at=at if at < counter.count else None)
            try:
                checkpoints.save(engine, ckpt_dir, 3, rank=0, keep=2)
            except Crash:
                pass
        scramble(engine)
        step = checkpoints.resume(engine, ckpt_dir, rank=0)
        where = f"killed at operation {at}: {killer.crashed}"
        assert step in (2, 3), where
        assert_weights(engine, step_2 if step == 2 else step_3)
        latest = (ckpt_dir / "latest").read_text().strip()
        assert latest in ("step-2", "step-3"), (where, latest)
        assert (ckpt_dir / latest / "mp_rank_00_model_states.pt").is_file(), where
    assert step == 3  # the save that was not killed


def test_prune_never_removes_what_latest_names(engine, tmp_path):
    for step in (1, 2, 3, 4):
        checkpoints.save(engine, tmp_path, step, rank=0, keep=10)
    (tmp_path / "latest").write_text("step-2")
    checkpoints.prune(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-2", "step-4"]


def test_resume_falls_back_to_the_previous_complete_checkpoint(engine, tmp_path, caplog):
    checkpoints.save(engine, tmp_path, 1, rank=0, keep=3)
    step_1 = weights(engine)
    train_step(engine)
    checkpoints.save(engine, tmp_path, 2, rank=0, keep=3)
    states = tmp_path / "step-2" / "mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[:100])  # damaged (a disk error, a copy cut short)
    scramble(engine)
    with caplog.at_level(logging.WARNING, logger="retrieval.training.checkpoints"):
        assert checkpoints.resume(engine, tmp_path, rank=0) == 1
    assert_weights(engine, step_1)
    assert "latest names step-2, which is missing or incomplete; resuming from step-1" in (
        caplog.text
    )
    shutil.rmtree(tmp_path / "step-1")  # nothing complete left: start again, not crash
    assert checkpoints.resume(engine, tmp_path, rank=0) == 0
