"""Mistakes a user makes with run directories and settings, refused in one line before anything is lost;
pinned installs; settings pinned only by stages that wrote something."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import gymnasium as gym
import pytest

from worldmodels import config as C
from worldmodels.errors import WorldModelsError
from worldmodels.pipeline import resolve
from worldmodels.pretrained import ROOT

from .conftest import cli, copy_run, one_line_error

REPO = Path(__file__).resolve().parents[1]


def _scenario_ids() -> list[str]:
    from vizdoom import gymnasium_wrapper  # noqa: F401

    # the scenarios and their -MultiBinary twins; not the map-level ids (VizdoomDoomE1M1-S1-v0, ...)
    return [k for k in gym.registry if k.startswith("Vizdoom") and not re.search(r"-S\d-v", k)]


# --------------------------------------------------------------------------- run-directory mistakes


@pytest.mark.parametrize(
    "command",
    [["collect", "--preset", "debug"], ["train-vae"], ["evaluate"], ["run", "--preset", "debug"],
     ["report"], ["evaluate", "--pretrained", "doom"], ["train-controller", "--pretrained", "doom"]],
)  # fmt: skip
def test_run_dir_that_is_a_file(tmp_path, command):
    path = tmp_path / "a-file"
    path.write_text("mine\n")
    line = one_line_error(cli(*command, "--run-dir", str(path), "--quiet"))
    assert str(path) in line and "is a file" in line
    assert path.read_text() == "mine\n"  # nothing lost


def test_run_dir_that_cannot_be_written():
    line = one_line_error(cli("collect", "--preset", "debug", "--run-dir", "/proc/wm-nope/run"))
    assert "/proc/wm-nope/run" in line and "cannot create" in line
    line = one_line_error(cli("collect", "--preset", "debug", "--run-dir", "/sys"))
    assert "/sys" in line


def test_run_dir_from_another_env_or_preset(collected_run, tmp_path):
    run = copy_run(collected_run, tmp_path / "run")
    line = one_line_error(cli("collect", "--run-dir", str(run), "--env", "VizdoomBasic-v1"))
    assert "--env.id" in line and "collect" in line
    line = one_line_error(cli("run", "--run-dir", str(run), "--preset", "demo"))
    assert "preset" in line and "'debug'" in line


def test_pretrained_into_a_run_dir_holding_another_agent(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    line = one_line_error(cli("evaluate", "--pretrained", "doom", "--run-dir", str(run)))
    assert "holds another agent" in line


# -------------------------------------------------------------------------------- pinned installs


def test_constraints_pin_every_dependency_and_setup_uses_them():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    for dep in (
        "torch",
        "numpy",
        "gymnasium",
        "vizdoom",
        "box2d",
        "pygame-ce",
        "cma",
        "ray",
        "isal",
    ):
        assert dep in pins, dep
    assert pins["torch"] == "2.13.0"
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_eval_json_records_the_versions_in_use(trained_run):
    from worldmodels.versions import package_versions

    e = json.loads((trained_run / "eval.json").read_text())
    assert e["versions"] == json.loads(json.dumps(package_versions()))
    assert e["versions"]["gymnasium"] == gym.__version__
    out = cli("info", "--preset", "debug")
    assert out.returncode == 0 and re.search(
        rf"gymnasium\s+{re.escape(gym.__version__)}", out.stdout
    )


# ----------------------------------------------- settings that cannot work together, refused up front


def test_carracing_in_the_dream_gets_the_reward_head(tmp_path):
    cfg = resolve(tmp_path / "a", "debug", {"env.id": "CarRacing-v3"})
    assert cfg.mdnrnn.reward_head
    assert not resolve(tmp_path / "b", "debug", {}).mdnrnn.reward_head  # Doom: +1 per step alive
    assert not resolve(
        tmp_path / "c", "carracing", {}
    ).mdnrnn.reward_head  # C trained in the real env


def test_impossible_settings_are_refused_before_any_stage(tmp_path):
    run = tmp_path / "run"
    line = one_line_error(cli("run", "--preset", "debug", "--run-dir", str(run), "--env",
                              "CarRacing-v3", "--mdnrnn.reward_head", "false"))  # fmt: skip
    assert "--mdnrnn.reward_head" in line and "CarRacing-v3" in line
    assert not (run / "episodes").exists() and not (run / "config.json").exists()


# ---------------------------------------------------- only stages that wrote something pin settings


def _shipped_copy(tmp_path: Path) -> Path:
    run = tmp_path / "copy"
    shutil.copytree(ROOT / "doom", run)
    return run


def test_a_stage_that_wrote_nothing_pins_nothing(tmp_path):
    run = _shipped_copy(tmp_path)
    with pytest.raises(WorldModelsError, match="stage train-controller is finished"):
        resolve(run, None, {"controller.trials": 16})
    (run / "controller.pt").unlink()
    assert resolve(run, None, {"controller.trials": 16}).controller.trials == 16
    # a finished V still pins what it depends on
    with pytest.raises(WorldModelsError, match="stage train-vae"):
        resolve(run, None, {"vae.lr": 0.5})


@pytest.mark.slow
def test_train_a_new_controller_on_the_shipped_agent(tmp_path):
    run = tmp_path / "newc"
    out = cli("train-controller", "--pretrained", "doom", "--run-dir", str(run), "--quiet", "--seed", "3",
              "--controller.trials", "2", "--controller.population", "4",
              "--controller.generations", "1", "--controller.eval_rollouts", "4",
              "--controller.max_steps", "100")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    shipped = (ROOT / "doom" / "controller.pt").read_bytes()
    assert (run / "controller.pt").read_bytes() != shipped
    assert (run / "vae.pt").read_bytes() == (ROOT / "doom" / "vae.pt").read_bytes()
    cfg = C.load_config(run / "config.json")
    assert cfg.controller.trials == 2 and cfg.seed == 3  # the new C's seed; V and M were copied
    again = cli("train-controller", "--pretrained", "doom", "--run-dir", str(run), "--seed", "4")
    assert again.returncode != 0 and "stage train-vae is finished with seed=3" in again.stderr
