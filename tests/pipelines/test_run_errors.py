"""How `rqa` ends when something is wrong: a user error is one line and exit code 2, before any
stage runs; a bug keeps its traceback. Also `rqa run --dry-run` as a user calls it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pipelines import cli
from pipelines.cli import main


def write_config(tmp_path, model: str) -> str:
    data = tmp_path / "beir"
    data.mkdir()
    (data / "corpus.jsonl").write_text("{}\n")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "errors", "run_dir": str(tmp_path / "run"), "model": model,
        "data": {"beir": str(data)}, "stages": {"augment": {"from_corpus": 5}},
    }))  # fmt: skip
    return str(path)


def test_an_offline_hub_id_is_one_line_before_any_stage(tmp_path):
    config = write_config(tmp_path, "sentence-transformers/all-MiniLM-L6-v2")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", config],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "sentence-transformers/all-MiniLM-L6-v2" in done.stderr
    assert "--model PATH" in done.stderr and "offline" in done.stderr
    assert not (tmp_path / "run" / "prepare").exists()


def test_a_bug_is_not_dressed_up_as_a_user_error(tmp_path, monkeypatch):
    def broken(args):
        raise ValueError("a bug in RQA, not in the input")

    monkeypatch.setattr(cli.run, "run", broken)
    with pytest.raises(ValueError, match="a bug in RQA"):
        main(["run", write_config(tmp_path, str(tmp_path))])


def test_a_user_error_is_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"rqa run: error: {tmp_path / 'missing.yaml'}: config file not found\n"


def test_dry_run_prints_every_stage_and_writes_nothing(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    assert main(["run", write_config(tmp_path, str(model)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["stage", "status", "action", "why"]
    assert [line.split()[:3] for line in lines[1:3]] == [
        ["prepare", "missing", "run"], ["train_dual_0", "missing", "run"]
    ]  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_busy_run_directory_is_one_line_before_ray_starts(tmp_path, capsys):
    from pipelines.run_lock import RunLock

    model = tmp_path / "model"
    model.mkdir()
    config = write_config(tmp_path, str(model))
    with RunLock(tmp_path / "run"):
        assert main(["run", config]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(tmp_path / "run") in err and "in use" in err


def test_an_interrupt_is_one_line_with_exit_code_130(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.run, "run", interrupted)
    assert main(["run", write_config(tmp_path, str(tmp_path))]) == 130
    assert capsys.readouterr().err == "rqa run: interrupted\n"
