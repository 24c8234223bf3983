"""The batched real-env agent: the same episodes as one env at a time, whatever the batch, on Doom (the
shipped agent) and CarRacing (an untrained agent of the paper's sizes), and the same scores on
gymnasium's CarRacing-v3 as on worldmodels/CarRacing-v3."""

from __future__ import annotations

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
