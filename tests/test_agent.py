"""The batched real-env agent: the same episodes as one env at a time, whatever the batch, on Doom (the
shipped agent) and CarRacing (an untrained agent of the paper's sizes), and the same scores on
gymnasium's CarRacing-v3 as on worldmodels/CarRacing-v3."""

from __future__ import annotations

import re

import numpy as np
import pytest

from worldmodels.agent import load_controller
from worldmodels.config import load_config, preset, with_overrides
from worldmodels.envs import adapter_for
from worldmodels.models import controller_dims, n_params
from worldmodels.pretrained import ROOT
from worldmodels.rundir import RunDir
from worldmodels.workers import EpisodesTask, VMWeights, play_task

pytestmark = pytest.mark.slow


def _carracing_agent(env_id: str, steps: int) -> tuple[VMWeights, np.ndarray]:
    cfg = with_overrides(preset("carracing"), {"env.id": env_id, "env.max_steps": steps})
    size = n_params(
        *controller_dims(cfg, adapter_for(env_id).controller_outputs), cfg.controller.bias
    )
    # steering from z with some gas: the car moves, turns and visits tiles
    params = np.random.default_rng(1).normal(0, 0.3, size).astype(np.float32)
    return VMWeights.untrained(cfg), params


def test_batched_doom_agent_plays_the_episodes_one_env_at_a_time_would():
    run = ROOT / "doom"
    cfg = with_overrides(load_config(run / "config.json"), {"env.max_steps": 250})
    weights = VMWeights.of_run(run, cfg)
    shipped = load_controller(RunDir(run).agent(cfg)[1], cfg)
    # a worse C than the shipped one, so that episodes end at different steps and envs leave the batch
    params = shipped + np.random.default_rng(0).normal(0, 0.5, shipped.shape).astype(np.float32)
    seeds = (101, 102, 103, 104)
    batched = play_task(EpisodesTask(params, seeds), weights)
    alone = [play_task(EpisodesTask(params, (s,)), weights)[0] for s in seeds]
    # two slots for four episodes: a slot whose episode ended starts the next one
    two = VMWeights.of_run(run, with_overrides(cfg, {"parallel.envs": 2}))
    refilled = play_task(EpisodesTask(params, seeds), two)
    # every episode with its own C (real-env fitness mixes candidates in one batch)
    rows = np.stack([params, shipped, params, shipped])
    mixed = play_task(EpisodesTask(rows, seeds), weights)
    assert batched == alone == refilled
    assert mixed[0::2] == alone[0::2]
    assert mixed[1::2] == [play_task(EpisodesTask(shipped, (s,)), weights)[0] for s in seeds[1::2]]
    assert len({n for _, n in batched}) > 1  # episodes of different lengths: envs left the batch


def test_batched_carracing_agent_and_both_carracing_envs_agree():
    fast, params = _carracing_agent("worldmodels/CarRacing-v3", 100)
    theirs, _ = _carracing_agent("CarRacing-v3", 100)
    seeds = (7, 8, 9)
    batched = play_task(EpisodesTask(params, seeds), fast)
    alone = [play_task(EpisodesTask(params, (s,)), fast)[0] for s in seeds]
    official = play_task(EpisodesTask(params, seeds), theirs)
    assert batched == alone == official
    assert len({r for r, _ in batched}) == len(seeds)  # the episodes differ: the agent drove


def test_max_gas_caps_cs_gas_on_the_road_and_in_the_dream_and_m_reads_the_capped_gas():
    """controller.max_gas 0.5: the same V, M, C and frames give the same steering and brake and half the
    gas, on the road (the env's action and what M reads) and in the dream built for the run; refused with a
    one-line error outside (0, 1] and on an env without gas."""
    import torch

    from worldmodels.agent import BatchedAgent
    from worldmodels.config import validate
    from worldmodels.dream import build_dream
    from worldmodels.errors import WorldModelsError

    full, params = _carracing_agent("worldmodels/CarRacing-v3", 100)
    cfg = with_overrides(full.config_object(), {"controller.max_gas": 0.5})
    capped = VMWeights.untrained(cfg)  # the same V and M: one seed
    out_dim = adapter_for(cfg.env.id).controller_outputs
    in_dim = (len(params) - out_dim) // out_dim
    params[in_dim : 2 * in_dim] = 0.0  # gas from the bias alone: a1 = tanh(0.5), gas 0.73 uncapped
    params[-out_dim:] = [0.0, 0.5, 0.0]
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    acted = []
    for w in (full, capped):
        agent = BatchedAgent(w.models(), 3)
        for slot in range(3):
            agent.start(slot, 10 + slot, params)
        acted.append((np.array(agent.act(frames, [0, 1, 2])), agent.last_vec.numpy()))
    (a_full, m_full), (a_cap, m_cap) = acted
    np.testing.assert_allclose(a_cap[:, [0, 2]], a_full[:, [0, 2]])
    np.testing.assert_allclose(a_cap[:, 1], 0.5 * a_full[:, 1], rtol=1e-6)
    assert a_full[:, 1].min() > 0.5  # the cap bites
    np.testing.assert_allclose(m_cap, a_cap, rtol=1e-6)  # M reads the gas the car got
    shipped = ROOT / "carracing"
    agent_cfg = load_config(shipped / "config.json")
    out = torch.tensor([[0.2, 1.0, -1.0]])
    for gas, c in ((1.0, agent_cfg), (0.5, with_overrides(agent_cfg, {"controller.max_gas": 0.5}))):
        dream = build_dream(shipped, c, "cpu")
        vec = dream.adapter.m_action(out, c.mdnrnn.action_input)
        torch.testing.assert_close(vec, torch.tensor([[0.2, gas, 0.0]]))
    for setting, words in (({"controller.max_gas": 0.0}, "controller.max_gas must be in (0, 1]"),
                           ({"controller.max_gas": 1.5}, "controller.max_gas must be in (0, 1]"),
                           ({"env.id": "VizdoomTakeCover-v1", "controller.max_gas": 0.5}, "has no gas")):  # fmt: skip
        with pytest.raises(WorldModelsError, match=re.escape(words)):
            validate(with_overrides(cfg, setting))


def test_a_batch_takes_a_committee_in_every_slot_and_refuses_sizes_mixed_by_name():
    from worldmodels.agent import BatchedAgent
    from worldmodels.errors import WorldModelsError

    cfg = preset("debug")
    models = VMWeights.untrained(cfg).models()
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    one = np.zeros(n_params(in_dim, out_dim, cfg.controller.bias), np.float32)
    three = np.stack([one, one, one])
    alone = BatchedAgent(models, 1)
    alone.start(0, 1, one)
    alone.start(0, 2, three)  # the same slot again (`worldmodels play` switching agents): resized
    assert alone.params.shape == (1, 3 * one.size)
    batch = BatchedAgent(models, 2)
    batch.start(0, 1, three)
    batch.start(1, 2, three)
    with pytest.raises(WorldModelsError, match="other slots hold"):
        batch.start(1, 3, one)  # slot 0 still holds the committee: one size a batch
