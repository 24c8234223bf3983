"""What M reads as the action (`mdnrnn.action_input`): the env's action vector (ours) or C's own output (the
reference code's Doom M). The env plays the same action either way; C's episodes record what M reads; the
dream feeds M the same; the random policy's steps stay the played action's vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodels.config import load_config, preset, save_config, with_overrides
from worldmodels.dream import build_dream
from worldmodels.envs import adapter_for

from .conftest import cli, copy_run, one_line_error


def test_doom_plays_the_same_action_for_cs_output_as_for_its_vector():
    adapter = adapter_for("VizdoomTakeCover-v1")
    a = torch.linspace(-1, 1, 301)[:, None]
    vec = adapter.m_action(a, "env")
    assert set(vec[:, 0].tolist()) == {-1.0, 0.0, 1.0}
    torch.testing.assert_close(adapter.m_action(a, "controller"), a)
    for out, v in zip(a.numpy(), vec.numpy(), strict=True):
        assert adapter.vector_to_action(out) == adapter.vector_to_action(v)


def test_cs_output_as_ms_action_needs_one_output_per_action_number():
    from worldmodels.envs.doom import DoomAdapter

    class TwoOutputs(
        DoomAdapter
    ):  # an env whose C had more outputs than M's action vector has numbers
        controller_outputs = 2

    with pytest.raises(Exception, match="action_input controller: C's 2 output"):
        TwoOutputs("VizdoomTakeCover-v1").m_action(torch.zeros(1, 2), "controller")


@pytest.fixture(scope="module")
def controller_input_run(trained_run, tmp_path_factory):
    """The debug run with M reading C's outputs."""
    run = copy_run(trained_run, tmp_path_factory.mktemp("action-input") / "run")
    cfg = with_overrides(load_config(run / "config.json"), {"mdnrnn.action_input": "controller"})
    save_config(cfg, run / "config.json")
    return run


def test_cs_episodes_record_what_m_read_and_the_env_played_the_same(controller_input_run):
    """Two episodes of C, recorded as a round of iterative training records them (in this process): each
    step's action is C's output where C acted, the played action's vector where the random policy did;
    with the env's vectors instead, only vectors are recorded. The first step plays the same action
    either way (M's memory starts at zero, so what M read has not reached C yet)."""
    from worldmodels.agent import BatchedAgent, load_controller, load_models
    from worldmodels.episodes import play_batch, worker_envs

    recorded, explore = {}, 0.3
    envs = worker_envs(preset("debug").env, 2)  # the debug run's env and step limit
    for action_input in ("controller", "env"):
        cfg = with_overrides(load_config(controller_input_run / "config.json"),
                             {"mdnrnn.action_input": action_input})  # fmt: skip
        models = load_models(controller_input_run, cfg)
        params = load_controller(controller_input_run / "controller.pt", cfg)
        agent = BatchedAgent(models, 2, explore)
        eps = play_batch(envs, models.adapter, agent, [(11, params), (12, params)], record=True)
        recorded[action_input] = np.concatenate([e["action"] for e in eps])
    env, ours = recorded["env"], recorded["controller"]
    assert set(np.unique(env)) <= {-1.0, 0.0, 1.0}
    assert (np.abs(ours) <= 1).all() and not set(np.unique(ours)) <= {-1.0, 0.0, 1.0}
    adapter = adapter_for("VizdoomTakeCover-v1")
    assert adapter.vector_to_action(ours[0]) == adapter.vector_to_action(env[0])
    assert np.isin(ours, [-1.0, 0.0, 1.0]).sum() > 0  # the random policy's steps: the played vector


@pytest.mark.parametrize("action_input", ["env", "controller"])
def test_the_dream_feeds_m_what_the_agent_feeds_it(controller_input_run, action_input):
    from worldmodels.models import controller as linear

    cfg = with_overrides(load_config(controller_input_run / "config.json"),
                         {"mdnrnn.action_input": action_input})  # fmt: skip
    dream = build_dream(controller_input_run, cfg, "cpu")
    seen = []
    step = dream.m.step
    dream.m.step = lambda z, a, state, masks=None: (
        seen.append(a.clone()),
        step(z, a, state, masks),
    )[1]
    in_dim = dream.z_dim + 2 * dream.m.hidden
    params = np.random.default_rng(0).normal(0, 0.5, (4, linear.n_params(in_dim, 1, False)))
    seeds = [5, 6, 7, 8]
    returns, lengths = dream.rollout(params.astype(np.float32), seeds)
    values = set(torch.cat(seen).flatten().tolist())
    if action_input == "env":
        assert values <= {-1.0, 0.0, 1.0}
    else:
        assert not values <= {-1.0, 0.0, 1.0} and all(-1 <= v <= 1 for v in values)
    # batched and alone agree
    r1, l1 = dream.rollout(params[2:3].astype(np.float32), [seeds[2]])
    assert (r1[0], l1[0]) == (returns[2], lengths[2])


def test_an_unknown_action_input_is_one_line(tmp_path):
    out = cli("run", "--preset", "debug", "--run-dir", str(tmp_path / "r"),
              "--mdnrnn.action_input", "both")  # fmt: skip
    assert "mdnrnn.action_input must be 'env' or 'controller'" in one_line_error(out)
