"""Shared fixtures: the debug preset, small fake pixel envs, and a collected debug run reused across tests."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.config import preset, with_overrides

# Ray, in these tests and the commands they start, stays on the loopback address (this machine only) and
# needs no token: a Linux Ray otherwise binds to the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@contextlib.contextmanager
def ray_to_itself():
    """Hold this machine's Ray for one test or module: Ray's tests start a cluster and end it with `ray
    stop --force`, which ends every Ray process on the machine. They share an xdist group, yet two CI runs
    had the cluster module's tests on both workers, and one worker's `ray stop` ended the other's cluster
    mid-test; a lock on a file every worker sees keeps any two of them from overlapping however they are
    scheduled (closing the file releases it)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "worldmodels-tests-ray.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# Under pytest-xdist (`pytest -n 2`) every worker, and every command a test starts, computes on one thread:
# two workers of two threads each on two cores spin against each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


class FakePixelEnv(gym.Env):
    """A tiny env with a Dict observation holding an image; the episode ends (terminated) after 12 steps."""

    metadata = {"render_modes": []}

    def __init__(self, continuous: bool = False, size: int = 32) -> None:
        self.observation_space = gym.spaces.Dict(
            {"pixels": gym.spaces.Box(0, 255, (size, size + 8, 3), np.uint8),
             "pos": gym.spaces.Box(-1, 1, (1,), np.float32)}
        )  # fmt: skip
        self.action_space = (
            gym.spaces.Box(-2.0, 2.0, (2,), np.float32) if continuous else gym.spaces.Discrete(4)
        )
        self.size = size

    def _obs(self):
        img = np.full((self.size, self.size + 8, 3), (self.t * 20) % 255, np.uint8)
        img[:, : self.noise] = 7
        return {"pixels": img, "pos": np.zeros(1, np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.noise = 0, int(self.np_random.integers(1, 8))
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        return self._obs(), 1.0, self.t >= 12, False, {}


gym.register("FakePixel-v0", entry_point=FakePixelEnv)
gym.register("FakePixelBox-v0", entry_point=FakePixelEnv, kwargs={"continuous": True})


@pytest.fixture
def debug_cfg():
    return preset("debug")


@pytest.fixture(scope="session")
def collected_run(tmp_path_factory) -> Path:
    """A debug run directory after `collect` (6 Doom episodes); copy it before changing it."""
    from worldmodels.data.collect import collect

    run = tmp_path_factory.mktemp("collected")
    cfg = preset("debug")
    from worldmodels.config import save_config

    save_config(cfg, run / "config.json")
    collect(run, cfg, progress=False)
    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A debug run with V, latents and M trained (seconds); copy it before changing it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    out = cli("run", "--preset", "debug", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real entry point (`worldmodels.cli.main`) in this process, its output captured: what a
    user sees, without the second or two a fresh process spends importing torch."""
    from worldmodels.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help, --version, a bad flag
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_process(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real entry point in a fresh process (signals, kills, what a new interpreter sees)."""
    return subprocess.run(
        [sys.executable, "-m", "worldmodels.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the process failed with exactly one line on stderr and no traceback; return that line."""
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


__all__ = ["FakePixelEnv", "cli", "cli_process", "copy_run", "one_line_error", "with_overrides"]


def stop_m_training(run: Path, cfg, updates: int = 2) -> None:
    """Leave RUN's M as a training stopped after `updates` updates leaves it: a checkpoint at that step that
    is not finished, with its optimiser and random stream (trained with mdnrnn.max_updates and no done
    refit, its last save written as an unfinished one), so the next train_mdnrnn resumes from there."""
    import dataclasses
    from unittest import mock

    from worldmodels.config import with_overrides
    from worldmodels.train import common
    from worldmodels.train.mdnrnn import train_mdnrnn
    from worldmodels.utils import read_header

    path = Path(run) / "mdnrnn.pt"
    path.unlink(missing_ok=True)
    save = common.save_training

    def unfinished(path, kind, cfg, pos, *rest):
        save(path, kind, cfg, dataclasses.replace(pos, finished=False), *rest)

    short = {"mdnrnn.max_updates": updates, "mdnrnn.done_refit_epochs": 0}
    with mock.patch.object(common, "save_training", unfinished):
        train_mdnrnn(run, with_overrides(cfg, short), progress=False)
    header = read_header(path, "mdnrnn")
    assert header["step"] == updates and not header["finished"]
