"""Every ViZDoom scenario and every kind of action space: collected, mapped from C's outputs, run end to end."""

from __future__ import annotations

import io
import json
import re
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
from worldmodels.utils import rng_for

from .conftest import cli

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
