"""A real local Ray cluster (`ray start --head` on 127.0.0.1, 2 CPUs): collection, real-env fitness and
evaluation through --ray-address give what the local backend gives, a killed worker's task is retried with
no episode lost or written twice, and real-env tasks need no file from the run directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data.storage import list_episodes

from .conftest import cli, cli_process, copy_run, ray_to_itself

# `ray stop --force` ends every Ray process on the machine: under `pytest -n 2` the Ray tests share a worker
# (and hold conftest's ray_to_itself, in case the scheduler splits them)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    if not RAY.exists():
        pytest.skip("ray is not installed")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    with ray_to_itself():
        start = subprocess.run(
            [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert start.returncode == 0, start.stderr[-2000:]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120, env=env)


def _ray_flags(address: str) -> list[str]:
    return ["--backend", "ray", "--ray-address", address, "--quiet"]


# A command that joins the cluster runs in a process of its own, as a user's does: a Ray driver outlives
# nothing it started, and one left in the test process would be ended by Ray once the cluster stops.


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in list_episodes(run / "episodes")}


def test_collection_on_the_cluster_survives_a_killed_worker(cluster, tmp_path):
    # 24 episodes of up to 300 steps: seconds of work, so a worker is caught in the middle of one.
    common = ["--preset", "debug", "--episodes", "24", "--env.max_steps", "300"]
    local = tmp_path / "local"
    out = cli("collect", "--run-dir", str(local), *common, "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]

    run = tmp_path / "ray"
    cmd = [sys.executable, "-m", "worldmodels.cli", "collect", "--run-dir", str(run), *common,
           *_ray_flags(cluster)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.time() + 120
    while killed is None and time.time() < deadline and proc.poll() is None:
        found = subprocess.run(["pgrep", "-f", "ray::_call"], capture_output=True, text=True).stdout
        pids = [int(p) for p in found.split()]
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.02)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, "no Ray worker was seen running a task"
    assert proc.returncode == 0, err[-2000:]
    # every episode once, byte for byte what the local backend wrote; no temporaries left
    assert _files(run) == _files(local)
    assert sorted(_files(run)) == [f"ep_{i:06d}.npz" for i in range(24)]
    assert not list((run / "episodes").glob(".*.tmp"))


def test_fitness_and_evaluation_on_the_cluster_match_the_local_backend(
    cluster, trained_run, tmp_path
):
    flags = ["--force", "train-controller", "--controller.where", "real",
             "--controller.generations", "2", "--controller.eval_every", "2"]  # fmt: skip
    local, remote = (
        copy_run(trained_run, tmp_path / "local"),
        copy_run(trained_run, tmp_path / "ray"),
    )
    out = cli("run", "--run-dir", str(local), *flags, "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    out = cli_process("run", "--run-dir", str(remote), *flags, *_ray_flags(cluster))
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("eval.json", "eval_random.json"):
        a, b = (json.loads((d / name).read_text()) for d in (local, remote))
        assert a["returns"] == b["returns"] and a["lengths"] == b["lengths"], name
    rows = [
        [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (local, remote)
    ]
    fit = [[r["es/return_mean"] for r in rs if r.get("stage") == "train-controller" and
            "es/return_mean" in r][-2:] for rs in rows]  # fmt: skip
    assert fit[0] == fit[1] and len(fit[0]) == 2


def test_real_env_tasks_need_no_file_from_the_run_directory(trained_run, tmp_path):
    """What a worker gets is the task and VMWeights: the run directory may be gone (another machine)."""
    from worldmodels.agent import load_controller
    from worldmodels.config import load_config
    from worldmodels.rundir import RunDir
    from worldmodels.workers import EpisodesTask, VMWeights, play_task

    run = copy_run(trained_run, tmp_path / "run")
    cfg = load_config(run / "config.json")
    params = load_controller(RunDir(run).agent(cfg)[1], cfg)
    weights = VMWeights.of_run(run, cfg)
    task = EpisodesTask(params, (11, 12))
    before = play_task(task, weights)
    shutil.rmtree(run)
    fresh = VMWeights(weights.config, weights.vae, weights.mdnrnn, weights.action_dim)
    assert play_task(task, fresh) == before
    assert np.isfinite([r for r, _ in before]).all()
