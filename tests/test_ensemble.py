"""M as an ensemble (`mdnrnn.members`): members differ, training resumes to the same weights, a one-member
ensemble dreams exactly as the single M, member choice and the disagreement penalty change the dream, and the
whole pipeline (real-env agent included) runs with one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from worldmodels.config import preset, save_config, with_overrides
from worldmodels.dream import Dream, build_dream
from worldmodels.models import MDNRNN, MDNRNNEnsemble
from worldmodels.models import controller as C
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.utils import load_checkpoint

from .conftest import cli, stop_m_training


def _ensemble_cfg(members: int = 3):
    return with_overrides(preset("debug"), {"mdnrnn.members": members})


def test_members_differ_and_training_resumes_to_the_same_weights(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    cfg = _ensemble_cfg()
    save_config(cfg, run / "config.json")
    (run / "mdnrnn.pt").unlink()
    train_mdnrnn(run, cfg, progress=False)
    ens = load_mdnrnn(run / "mdnrnn.pt", cfg)
    assert isinstance(ens, MDNRNNEnsemble) and len(ens.members) == 3
    z, a = torch.randn(2, 5, cfg.vae.z_dim), torch.randn(2, 5, 1)
    with torch.no_grad():
        mus = [m(z, a)[0].mu for m in ens.members]
    assert not torch.allclose(mus[0], mus[1]) and not torch.allclose(mus[1], mus[2])
    ref_header, ref_blob = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    # stopped after 2 updates, then resumed: the same weights as the uninterrupted run
    stop_m_training(run, cfg)
    train_mdnrnn(run, cfg, progress=False)
    header, blob = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    assert header["step"] == ref_header["step"] > 2
    for k, v in ref_blob["model"].items():
        torch.testing.assert_close(blob["model"][k], v, rtol=0, atol=0)
    # an M of another ensemble size is refused by name
    try:
        load_mdnrnn(run / "mdnrnn.pt", _ensemble_cfg(2))
    except Exception as e:
        assert "3 member(s)" in str(e) and "mdnrnn.members is 2" in str(e)
    else:
        raise AssertionError("an M with 3 members loaded as 2")


def _rollouts(dream: Dream, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    in_dim = dream.z_dim + 2 * dream.m.hidden
    params = np.random.default_rng(0).normal(0, 0.5, (n, C.n_params(in_dim, 1, False)))
    return dream.rollout(params.astype(np.float32), list(range(100, 100 + n)))


def _dream_of(single: Dream, m, **spec) -> Dream:
    from dataclasses import replace

    return Dream(m, single.adapter, single.start_mu.numpy(), (2 * single.start_std.log()).numpy(),
                 replace(single.spec, **spec))  # fmt: skip


def test_one_member_ensemble_dreams_as_the_single_m(trained_run):
    single = build_dream(trained_run, preset("debug"), "cpu")
    ref = _rollouts(single)
    for spec in ({}, {"disagreement_penalty": 5.0}, {"member_choice": "first"}):
        got = _rollouts(_dream_of(single, MDNRNNEnsemble([single.m]), **spec))
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_member_choice_and_the_disagreement_penalty_change_the_dream(trained_run):
    single = build_dream(trained_run, preset("debug"), "cpu")
    other = MDNRNN(single.m.z_dim, 1, single.m.hidden, single.m.k, True, False)
    other.load_state_dict(single.m.state_dict())
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ens = MDNRNNEnsemble([single.m, other.eval()])
    ref = _rollouts(single)
    first = _rollouts(_dream_of(single, ens, member_choice="first"))
    np.testing.assert_array_equal(first[1], ref[1])  # member 0 only: the single M's dream
    mixed = _rollouts(_dream_of(single, ens, member_choice="random"))
    assert not np.array_equal(mixed[1], ref[1])
    paid = _rollouts(_dream_of(single, ens, member_choice="first", disagreement_penalty=1.0))
    np.testing.assert_array_equal(paid[1], ref[1])  # the same rollouts ...
    assert (paid[0] < ref[0]).all()  # ... each step's +1 less the members' disagreement


def test_a_member_drawn_per_rollout_is_followed_throughout(trained_run, monkeypatch):
    """`member_choice rollout`: each rollout follows one member for all its steps (drawn from its seed;
    both are drawn), a rollout that follows member 0 is member 0's own dream, and the dream env draws the
    member as the batched dream does. One rollout at a time: a batch's sums differ from a lone rollout's
    in their last bits."""
    from worldmodels.dream import DreamEnv

    single = build_dream(trained_run, preset("debug"), "cpu")
    other = MDNRNN(single.m.z_dim, 1, single.m.hidden, single.m.k, True, False)
    other.load_state_dict(single.m.state_dict())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    in_dim = single.z_dim + 2 * single.m.hidden
    params = np.random.default_rng(0).normal(0, 0.5, (12, C.n_params(in_dim, 1, False)))
    params = params.astype(np.float32)
    first = _dream_of(single, MDNRNNEnsemble([single.m, other.eval()]), member_choice="first")
    kept = _dream_of(single, MDNRNNEnsemble([single.m, other]), member_choice="rollout")
    picks: list[int] = []
    follow = Dream._follow

    def recording(self, outs, u_member):
        picks.append(int((u_member * len(outs)).long()[0]))
        return follow(self, outs, u_member)

    monkeypatch.setattr(Dream, "_follow", recording)
    which = []
    for i in range(len(params)):
        picks.clear()
        got = kept.rollout(params[i : i + 1], [100 + i])
        assert len(set(picks)) == 1 and len(picks) == got[1][0]  # one member, every step
        which.append(picks[0])
        if picks[0] == 0:
            assert first.rollout(params[i : i + 1], [100 + i]) == got
        if i < 4:
            env = DreamEnv(kept)
            obs, _ = env.reset(seed=100 + i)
            total, steps, over = 0.0, 0, False
            while not over:
                a = C.act(torch.as_tensor(params[i])[None], torch.as_tensor(obs)[None], 1, False)
                obs, r, terminated, truncated, _ = env.step(a[0].numpy())
                total, steps, over = total + r, steps + 1, terminated or truncated
            assert (total, steps) == (got[0][0], got[1][0])
    assert set(which) == {0, 1}
    assert any(first.rollout(params[i : i + 1], [100 + i]) != kept.rollout(params[i : i + 1], [100 + i])
               for i in range(len(params)) if which[i] == 1)  # fmt: skip


def test_pipeline_with_an_ensemble(tmp_path):
    run = tmp_path / "run"
    out = cli("run", "--preset", "debug", "--run-dir", str(run), "--mdnrnn.members", "2",
              "--controller.disagreement_penalty", "0.1", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    e = json.loads((run / "eval.json").read_text())
    assert len(e["returns"]) == 4
    header, _ = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    assert header["config"]["mdnrnn"]["members"] == 2
    # the API serves it: `memory` is member 0 (what the agent reads), the dream steps every member
    import worldmodels as wm

    agent = wm.load(run)
    ens = load_mdnrnn(run / "mdnrnn.pt", agent.config)
    assert all(torch.equal(a, b) for a, b in zip(agent.memory.model.state_dict().values(),
                                                  ens.primary.state_dict().values(), strict=True))  # fmt: skip
    env = agent.dream(max_steps=5)
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.zeros(agent.controller.out_dim, np.float32))
    assert obs.shape == env.observation_space.shape and np.isfinite(reward)
    policy = agent.policy()
    policy.reset(0)
    assert policy.act(agent.make_env().reset(seed=0)[0]) is not None
