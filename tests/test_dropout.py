"""Dropout in M and a dream with a mask per rollout (`mdnrnn.dropout`, `controller.dream_dropout`): the
unrolled LSTM is nn.LSTM's, training and dream apply the same masks the same way, rate 0 is today's dream,
masks differ between rollouts and hold within one, and a resumed training gives the same weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from worldmodels.config import preset, save_config, with_overrides
from worldmodels.dream import DreamSpec, build_dream, rollout_masks
from worldmodels.models.mdnrnn import MDNRNN, DropoutMasks, dropout_masks
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.utils import load_checkpoint

from .conftest import cli, one_line_error, stop_m_training


def _m() -> MDNRNN:
    torch.manual_seed(0)
    return MDNRNN(6, 2, 16, done_head=True, reward_head=True)


def test_the_unrolled_lstm_with_masks_of_ones_is_the_fused_lstm():
    m = _m()
    z, a = torch.randn(3, 9, 6), torch.randn(3, 9, 2)
    ones = DropoutMasks(torch.ones(3, 8), torch.ones(3, 16))
    fused, (h1, c1) = m(z, a)
    unrolled, (h2, c2) = m(z, a, masks=ones)
    for f, u in zip(fused, unrolled, strict=True):
        torch.testing.assert_close(u, f, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h2, h1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c2, c1, atol=1e-5, rtol=1e-5)
    # and the gradients the weights get
    fused.mu.sum().backward()
    want = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m(z, a, masks=ones)[0].mu.sum().backward()
    for p, g in zip(m.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-4)


def test_a_masked_sequence_equals_the_same_masks_stepped_one_step_at_a_time():
    """Training (the unrolled sequence) and the dream (one LSTM step at a time) drop the same units."""
    m = _m()
    z, a = torch.randn(3, 7, 6), torch.randn(3, 7, 2)
    masks = dropout_masks(3, 6, 2, 16, 0.3, torch.Generator().manual_seed(1))
    seq, _ = m(z, a, masks=masks)
    plain, _ = m(z, a)
    assert not torch.allclose(seq.mu, plain.mu)  # the masks change M's predictions
    state = None
    for t in range(7):
        out, state = m.step(z[:, t], a[:, t], state, masks)
        torch.testing.assert_close(out.mu[:, 0], seq.mu[:, t], atol=1e-5, rtol=1e-5)


def test_masks_keep_one_minus_the_rate_and_scale_by_its_inverse():
    masks = dropout_masks(4000, 6, 2, 16, 0.2, torch.Generator().manual_seed(0))
    both = torch.cat([masks.input, masks.hidden], 1)
    assert set(both.unique().tolist()) == {0.0, 1.25}
    assert (both > 0).float().mean().item() == pytest.approx(0.8, abs=0.01)


@pytest.fixture(scope="module")
def dropout_run(trained_run, tmp_path_factory):
    """The debug run with M trained again at dropout 0.2 (and its C untouched)."""
    run = shutil.copytree(trained_run, tmp_path_factory.mktemp("dropout") / "run")
    cfg = with_overrides(preset("debug"), {"mdnrnn.dropout": 0.2})
    save_config(cfg, run / "config.json")
    (run / "mdnrnn.pt").unlink()
    train_mdnrnn(run, cfg, progress=False)
    return run, cfg


def test_training_with_dropout_changes_m_and_resumes_to_the_same_weights(trained_run, dropout_run):
    run, cfg = dropout_run
    plain = load_checkpoint(trained_run / "mdnrnn.pt", "mdnrnn")[1]["model"]
    ref_header, ref_blob = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    ref = ref_blob["model"]
    assert not torch.equal(ref["lstm.weight_hh_l0"], plain["lstm.weight_hh_l0"])
    # stopped after 2 updates, then resumed: the masks come from the training's saved stream
    again = shutil.copytree(run, run.parent / "again")
    stop_m_training(again, cfg)
    train_mdnrnn(again, cfg, progress=False)
    header, blob = load_checkpoint(again / "mdnrnn.pt", "mdnrnn")
    assert header["step"] == ref_header["step"] > 2
    for k, v in ref.items():
        torch.testing.assert_close(blob["model"][k], v, rtol=0, atol=0)


def _params(dream, n: int) -> np.ndarray:
    from worldmodels.models import controller as linear

    in_dim = dream.z_dim + 2 * dream.m.hidden
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.5, (n, linear.n_params(in_dim, 1, False))).astype(np.float32)


def _features(dream, seeds: list[int], steps: int) -> np.ndarray:
    """C's input over `steps` steps of a vector dream (C's outputs all 0), (steps, N, in)."""
    from worldmodels.dream import DreamVectorEnv

    env = DreamVectorEnv(dream, len(seeds))
    obs, _ = env.reset(seed=seeds)
    seen = []
    for _ in range(steps):
        obs, *_ = env.step(np.zeros((len(seeds), 1), np.float32))
        seen.append(obs)
    return np.stack(seen)


def test_the_dream_at_rate_0_is_the_plain_dream_and_masks_hold_per_rollout(dropout_run):
    run, cfg = dropout_run
    assert DreamSpec.of(cfg, True).dropout == 0.2  # dream_dropout -1: M's training rate
    # long lives (no end for 30 steps at the debug M's done probability), so every step is compared
    cfg = with_overrides(cfg, {"controller.max_steps": 30})
    zero = with_overrides(cfg, {"controller.dream_dropout": 0.0})
    assert build_dream(run, zero, "cpu").spec.dropout == 0.0
    # rate 0 draws nothing: the rollouts of a dream built before the setting existed
    assert rollout_masks(build_dream(run, zero, "cpu").m, [1, 2], 0.0, torch.device("cpu")) is None
    seeds = [20, 21, 22, 23]
    plain = _features(build_dream(run, zero, "cpu"), seeds, 30)
    dropped = build_dream(run, cfg, "cpu")
    masked = _features(dropped, seeds, 30)
    assert np.abs(masked - plain).max() > 1e-2  # the masks change the dream
    # each rollout's masks come from its own seed and hold for all its steps: alone, or in another
    # batch, a rollout takes the same path
    alone = _features(dropped, [22], 30)
    np.testing.assert_allclose(alone[:, 0], masked[:, 2], atol=1e-5)
    others = _features(dropped, [99, 22, 98], 30)
    np.testing.assert_allclose(others[:, 1], masked[:, 2], atol=1e-5)
    masks = rollout_masks(dropped.m, seeds, 0.2, torch.device("cpu"))
    assert not torch.equal(masks.hidden[0], masks.hidden[1])  # rollouts differ
    # C's batched training dream plays the same rollouts as the env (returns, lengths), and a rollout
    # alone as in its batch
    params = _params(dropped, len(seeds))
    returns, lengths = dropped.rollout(params, seeds)
    r1, l1 = dropped.rollout(params[2:3], [seeds[2]])
    assert (r1[0], l1[0]) == (returns[2], lengths[2])


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--mdnrnn.dropout", "1", "mdnrnn.dropout must be in [0, 1)"),
        ("--controller.dream_dropout", "-0.5", "controller.dream_dropout must be in [0, 1)"),
    ],
)
def test_a_dropout_rate_out_of_range_is_one_line(tmp_path, flag, value, needle):
    line = one_line_error(
        cli("run", "--preset", "debug", "--run-dir", str(tmp_path / "r"), flag, value)
    )
    assert needle in line
    assert not (tmp_path / "r").exists()


def test_dropout_with_an_ensemble_is_refused(tmp_path):
    out = cli("run", "--preset", "debug", "--run-dir", str(tmp_path / "r"),
              "--mdnrnn.members", "2", "--mdnrnn.dropout", "0.1")  # fmt: skip
    assert "dropout needs one M" in one_line_error(out)
