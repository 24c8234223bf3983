"""SIGTERM (or a first Ctrl-C) during V's, M's or C's training: the loop finishes its update or generation,
saves a checkpoint there and exits 128 + signal; the rerun continues to exactly the uninterrupted result."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.config import preset, save_config, with_overrides
from worldmodels.train.common import GracefulStop, Interrupted
from worldmodels.train.controller import train_controller
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.train.vae import train_vae
from worldmodels.utils import load_checkpoint

from .conftest import cli


def _reached(metrics: Path, stage: str, step: int) -> bool:
    if not metrics.exists():
        return False
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if row.get("stage") == stage and row.get("step", 0) >= step:
            return True
    return False


def _signal_midway(run: Path, command: str, stage: str, after: int) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "worldmodels.cli", command, "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if _reached(run / "metrics.jsonl", stage, after):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


TRAIN = {"train-vae": train_vae, "train-mdnrnn": train_mdnrnn, "train-controller": train_controller}
CASES = {
    # stage: (the file that holds its state, the files to remove first, overrides: long enough to be
    # stopped midway and never checkpointed by the clock, so the only mid-run checkpoint is the graceful one)
    "train-vae": ("vae.pt", [], {"vae.epochs": 2, "vae.checkpoint_every_s": 1e9}),
    "train-mdnrnn": (
        "mdnrnn.pt",
        ["mdnrnn.pt"],
        {"mdnrnn.epochs": 60, "mdnrnn.checkpoint_every_s": 1e9},
    ),
    "train-controller": (
        "es_state.pkl",
        ["controller.pt", "es_state.pkl"],
        {"controller.generations": 15},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(CASES))
def test_sigterm_saves_where_it_stopped_and_the_rerun_matches_an_uninterrupted_run(
    stage, collected_run, trained_run, tmp_path
):
    state_file, remove, overrides = CASES[stage]
    cfg = with_overrides(preset("debug"), overrides)
    runs = {}
    for name in ("ref", "stopped"):
        run = runs[name] = tmp_path / name
        shutil.copytree(collected_run if stage == "train-vae" else trained_run, run)
        for f in [*remove, "metrics.jsonl"]:
            (run / f).unlink(missing_ok=True)
        save_config(cfg, run / "config.json")
    TRAIN[stage](runs["ref"], cfg, progress=False)

    after = 3 if stage == "train-controller" else 10
    rc, err = _signal_midway(runs["stopped"], stage, stage, after)
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM" in err and "checkpoint saved" in err and "rerun" in err
    if stage == "train-controller":
        from worldmodels.es import CMAES

        reached = CMAES.load(runs["stopped"] / state_file).generation
        assert 3 <= reached < 15
    else:
        header, _ = load_checkpoint(runs["stopped"] / state_file, state_file[:-3])
        assert not header["finished"] and header["step"] >= 10, header["step"]

    assert cli(stage, "--run-dir", str(runs["stopped"]), "--quiet").returncode == 0
    if stage == "train-controller":
        _, ref = load_checkpoint(runs["ref"] / "controller.pt", "controller")
        _, got = load_checkpoint(runs["stopped"] / "controller.pt", "controller")
        np.testing.assert_array_equal(got["params"].numpy(), ref["params"].numpy())
    else:
        kind = state_file[:-3]
        h_ref, b_ref = load_checkpoint(runs["ref"] / state_file, kind)
        h_run, b_run = load_checkpoint(runs["stopped"] / state_file, kind)
        assert h_run["finished"] and h_run["step"] == h_ref["step"]
        for k, v in b_ref["model"].items():
            torch.testing.assert_close(b_run["model"][k], v, rtol=0, atol=0)


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    stop = GracefulStop("update").start()
    try:
        assert not stop
        signal.raise_signal(signal.SIGTERM)
        assert stop and stop.signum == signal.SIGTERM  # asked, not yet stopped
        with pytest.raises(Interrupted) as e:
            signal.raise_signal(signal.SIGTERM)
        assert not e.value.saved
        with pytest.raises(Interrupted) as e:
            stop.check()
        assert e.value.saved and e.value.signum == signal.SIGTERM
    finally:
        stop.close()
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_sigint_stays_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = GracefulStop("update").start()
    try:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
        assert not stop
    finally:
        stop.close()
        signal.signal(signal.SIGINT, old)
