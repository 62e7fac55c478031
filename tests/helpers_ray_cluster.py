"""A two-node Ray cluster on this machine, every process on 127.0.0.1, for tests that join one
with ``ray: {address: ...}``: two ``ray start --block`` processes, each in its own process group
and temp dir, stopped by the test that started them (never `ray stop`, which would end every
Ray of the machine). Token authentication with a token of its own: what a client needs to join
comes with the address (``auth_env``), and no other Ray of the machine can join by mistake.

Run as a module, it is ``ray start`` for a node that joins such a cluster (``join ARGS``), or
prints which node each actor of a cluster ran on (``actors ADDRESS``), read from the GCS.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from retrieval.distributed import free_port

STARTED = "Ray runtime started"  # what `ray start` prints once its node is up
REPO = Path(__file__).resolve().parents[1]  # where `python -m tests.helpers_ray_cluster` runs


def node_args(temp_dir: Path, num_gpus: int = 0, num_cpus: int = 1) -> list[str]:
    """Settings every node takes: one CPU, a small object store, and random ports where Ray's
    defaults are fixed ones that another Ray of this machine may hold. ``num_gpus`` and
    ``num_cpus``: what the node declares (Ray schedules them whether the machine has them or
    not)."""
    return [
        "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--temp-dir",
        str(temp_dir), "--num-gpus", str(num_gpus),
        "--object-store-memory", str(256 * 1024 * 1024), "--min-worker-port", "0",
        "--max-worker-port", "0", "--dashboard-agent-listen-port", str(free_port()),
        "--disable-usage-stats", "--block",
    ]  # fmt: skip


def auth_env() -> dict[str, str]:
    """Token authentication with a new token, for the nodes and every client of them."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def start(cmd: list[str], log: Path, auth: dict) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group (Ray's processes join that group)."""
    loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    at_once = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # SIGTERM stops, no 30 s drain
    env = {**os.environ, **auth, **loopback, **at_once}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)  # fmt: skip


def wait_started(proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while STARTED not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"ray start exited: {log.read_text()[-3000:]}"
        assert time.time() < deadline, f"ray start not up in {timeout_s} s: {log}"
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen], temp: Path, timeout_s: float = 30) -> None:
    """SIGTERM to each ``ray start --block``, which then stops its node's processes in order
    (the raylet ends its Ray workers, which run in process groups of their own); SIGKILL to
    what is left of its process group. Last, a process whose command line names this cluster's
    temp dir (a worker a raylet started as it went down) is killed too: it can only be ours."""
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    stragglers = leftovers(temp)
    for process in stragglers:
        process.kill()
    psutil.wait_procs(stragglers, timeout=timeout_s)


def leftovers(temp: Path) -> list[psutil.Process]:
    """Running processes whose command line names ``temp``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(temp) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group started with this process: ours alone
    except ProcessLookupError:
        pass


def hidden_from(folder: Path) -> list[str]:
    """A command prefix that runs a command in a mount namespace of its own where ``folder`` is
    an empty tmpfs: a node started so cannot see what the others write there (needs root)."""
    script = f'mount -t tmpfs tmpfs "{folder}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "--"]


@contextmanager
def two_node_cluster(
    logs: Path, num_gpus: int = 0, second_prefix: list[str] = (), num_cpus: int = 1,
    nodes: int = 2,
):  # fmt: skip
    """``("127.0.0.1:PORT", auth_env)`` of a head node and a second node (``nodes=1``: the head
    alone), ``num_cpus`` CPUs and ``num_gpus`` declared GPUs each; each node's `ray start`
    output in ``logs``; ``second_prefix`` runs before the second node's command (hidden_from).
    Their temp dirs are short ones of their own: Ray's socket paths must fit in 107 bytes."""
    port, procs, auth = free_port(), [], auth_env()
    with tempfile.TemporaryDirectory(prefix="rqa-ray-", ignore_cleanup_errors=True) as temp:
        head = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", str(port),
                "--include-dashboard=false", "--ray-client-server-port", str(free_port()),
                *node_args(Path(temp) / "head", num_gpus, num_cpus)]  # fmt: skip
        join = [*second_prefix, sys.executable, "-m", "tests.helpers_ray_cluster", "join",
                "--address", f"127.0.0.1:{port}",
                *node_args(Path(temp) / "second", num_gpus, num_cpus)]  # fmt: skip
        starts = [(head, logs / "head.log"), (join, logs / "second.log")][:nodes]
        try:
            for cmd, log in starts:
                procs.append(start(cmd, log, auth))
                wait_started(procs[-1], log)
            yield f"127.0.0.1:{port}", auth
        finally:
            stop(procs, Path(temp))


def actor_nodes(address: str, auth: dict) -> dict:
    """``{"nodes": [node id, ...], "actors": [{"class", "node"}, ...]}`` of the cluster at
    ``address``, alive and dead actors alike, from a fresh process (this one may hold a Ray)."""
    cmd = [sys.executable, "-m", "tests.helpers_ray_cluster", "actors", address]
    env = {**os.environ, **auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_actor_nodes(address: str) -> None:
    """The GCS's actor table, which keeps each actor's node after it has exited. Ray's public
    state API (ray.util.state) asks the dashboard, which these nodes do not run."""
    import ray
    from ray._private import state

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    actors = [
        {"class": info["ActorClassName"], "node": info["Address"]["NodeID"],
         "gpus": info.get("RequiredResources", {}).get("GPU", 0.0)}
        for info in state.actors().values()
    ]  # fmt: skip
    ray.shutdown()
    print(json.dumps({"nodes": nodes, "actors": actors}))


def _join_on_loopback(argv: list[str]) -> None:
    """`ray start ARGV` for a node joining a cluster on 127.0.0.1. Ray's CLI refuses to start a
    joining node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (the switch that keeps a Ray of
    this machine on the loopback), and without it swaps 127.0.0.1 for the machine's outward
    address, where the head does not listen. Here the refusal is lifted and the loopback kept;
    the node's own processes still start with the switch at 0."""
    from ray._common.network_utils import get_localhost_ip
    from ray._private import ray_constants, services
    from ray.scripts.scripts import main

    ray_constants.ENABLE_RAY_CLUSTER = True
    services.get_node_ip_address = lambda address=None: get_localhost_ip()
    sys.argv = ["ray", "start", *argv]
    main()


if __name__ == "__main__":
    if sys.argv[1] == "join":
        _join_on_loopback(sys.argv[2:])
    elif sys.argv[1] == "actors":
        _print_actor_nodes(sys.argv[2])
