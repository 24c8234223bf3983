"""What a new user hit (issue 12): every ViZDoom scenario and action space, run-directory mistakes, pinned
installs, settings that cannot work together, and settings pinned by stages that did nothing."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodels import config as C
from worldmodels.config import CollectConfig
from worldmodels.envs import adapter_for
from worldmodels.envs.actions import codec_for
from worldmodels.errors import WorldModelsError
from worldmodels.pipeline import resolve
from worldmodels.pretrained import ROOT
from worldmodels.utils import rng_for

from .conftest import cli, copy_run, one_line_error

REPO = Path(__file__).resolve().parents[1]


def _scenario_ids() -> list[str]:
    from vizdoom import gymnasium_wrapper  # noqa: F401

    # the scenarios and their -MultiBinary twins; not the map-level ids (VizdoomDoomE1M1-S1-v0, ...)
    return [k for k in gym.registry if k.startswith("Vizdoom") and not re.search(r"-S\d-v", k)]


# ------------------------------------------------------------------------------- every ViZDoom scenario


def test_every_vizdoom_scenario_collects_an_episode():
    from worldmodels.data.collect import record_episode

    ids = _scenario_ids()
    assert len(ids) >= 24 and "VizdoomTakeCover-MultiBinary-v1" in ids
    for env_id in ids:
        adapter = adapter_for(env_id)
        env = adapter.make(12)
        policy = adapter.random_policy(CollectConfig())
        policy.reset(rng_for(0, 1))
        ep = record_episode(env, adapter, policy, 5)
        env.close()
        with np.load(io.BytesIO(ep["data"])) as f:
            obs, action = f["obs"], f["action"]
        assert obs.shape == (ep["steps"], 64, 64, 3) and obs.dtype == np.uint8, env_id
        assert action.shape == (ep["steps"], adapter.action_dim), env_id
        # C's outputs map to actions the env accepts
        vec = adapter.controller_to_vector(torch.rand(4, adapter.controller_outputs) * 2 - 1)
        assert adapter.action_space.contains(adapter.vector_to_action(vec[0].numpy())), env_id
    assert adapter_for("VizdoomTakeCover-v1").action_dim == 1  # the paper's one-number action


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(5, start=2),
        gym.spaces.MultiBinary(4),
        gym.spaces.Box(-2.0, 3.0, (2,), np.float32),
        gym.spaces.Dict({"binary": gym.spaces.MultiBinary(3),
                         "continuous": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)}),
    ],
)  # fmt: skip
def test_action_codecs_round_trip_and_map_controller_outputs_into_the_space(space):
    codec = codec_for(space)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = codec.sample(rng)
        assert space.contains(a)
        v = codec.encode(a)
        assert v.shape == (codec.dim,) and v.dtype == np.float32
        np.testing.assert_equal(codec.encode(codec.decode(v)), v)
    vecs = codec.from_controller(torch.rand(16, codec.dim) * 2 - 1)
    assert vecs.shape == (16, codec.dim) and torch.isfinite(vecs).all()
    assert all(space.contains(codec.decode(v.numpy())) for v in vecs)


def test_unsupported_action_space_names_the_env():
    with pytest.raises(WorldModelsError, match="not Discrete, MultiBinary, Box"):
        codec_for(gym.spaces.MultiDiscrete([3, 4]))


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["VizdoomBasic-v1", "VizdoomDefendCenter-MultiBinary-v1"])
def test_debug_run_on_other_vizdoom_scenarios(tmp_path, env_id):
    run = tmp_path / "run"
    out = cli("run", "--preset", "debug", "--run-dir", str(run), "--env", env_id, "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = C.load_config(run / "config.json")
    assert cfg.env.id == env_id and cfg.mdnrnn.reward_head  # the dream needs M's reward here
    for name in ("eval.json", "eval_random.json", "eval_dream.json", "report.html"):
        assert (run / name).exists(), name
    assert json.loads((run / "eval.json").read_text())["env"] == env_id


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
    out = cli("train-controller", "--pretrained", "doom", "--run-dir", str(run), "--quiet",
              "--controller.trials", "2", "--controller.population", "4",
              "--controller.generations", "1", "--controller.eval_rollouts", "4",
              "--controller.max_steps", "100")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    shipped = (ROOT / "doom" / "controller.pt").read_bytes()
    assert (run / "controller.pt").read_bytes() != shipped
    assert (run / "vae.pt").read_bytes() == (ROOT / "doom" / "vae.pt").read_bytes()
    assert C.load_config(run / "config.json").controller.trials == 2
