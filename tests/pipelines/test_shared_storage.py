"""Shared storage checked, not assumed: on a two-node Ray cluster (127.0.0.1) whose nodes share
this machine's filesystem, every node sees the run directory; when the second node's view of
that folder is an empty tmpfs of its own (a mount namespace), the check is one line naming the
node and the path, and the probe leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers_ray_cluster import REPO, hidden_from, two_node_cluster

CHECK = "from pipelines.shared_storage import check_shared_run_dir; import ray, sys; " \
        "ray.init(address=sys.argv[1], log_to_driver=False); " \
        "print('nodes', check_shared_run_dir(__import__('pathlib').Path(sys.argv[2])))"  # fmt: skip


def check(address: str, auth: dict, run_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, **auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-c", CHECK, address, str(run_dir)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip


def can_hide_folders() -> bool:
    done = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.cluster
def test_every_node_sees_a_shared_run_directory(tmp_path):
    with two_node_cluster(tmp_path / "logs") as (address, auth):
        done = check(address, auth, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "2"
    assert list((tmp_path / "run").iterdir()) == []  # the probe cleaned up after itself


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.skipif(not can_hide_folders(), reason="needs unshare --mount (root)")
def test_a_node_that_cannot_see_the_run_directory_is_one_line(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    with two_node_cluster(tmp_path / "logs", second_prefix=hidden_from(shared)) as (addr, auth):
        done = check(addr, auth, shared / "run")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "StorageNotSharedError" in last and "node 127.0.0.1" in last, done.stderr[-3000:]
    assert f"the run directory {shared / 'run'}" in last
