"""M: the mixture NLL, temperature, sequence vs step, learning a bimodal process and death, masks."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from worldmodels.config import preset, save_config, validate, with_overrides
from worldmodels.errors import WorldModelsError
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.models.mdnrnn import MDNRNN, mdn_nll, sample_mixture
from worldmodels.train.controller import train_controller
from worldmodels.train.mdnrnn import mdnrnn_losses, self_fed, train_mdnrnn
from worldmodels.utils import load_checkpoint

from .conftest import cli, one_line_error, stop_m_training


def test_nll_matches_mixture_same_family():
    logpi = torch.log_softmax(torch.randn(4, 6, 3, 5), -1)
    mu, logsigma, x = torch.randn(4, 6, 3, 5), torch.randn(4, 6, 3, 5) * 0.3, torch.randn(4, 6, 3)
    ref = -MixtureSameFamily(Categorical(logits=logpi), Normal(mu, logsigma.exp())).log_prob(x)
    torch.testing.assert_close(mdn_nll(logpi, mu, logsigma, x), ref)


def test_sample_variance_scales_with_tau_for_one_component():
    g = torch.Generator().manual_seed(0)
    shape = (20000, 1, 1)
    logpi, mu, logsigma = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    for tau in (0.25, 1.0, 2.0):
        z = sample_mixture(logpi, mu, logsigma, tau, g)
        assert z.var().item() == pytest.approx(tau, rel=0.05)


def test_low_tau_samples_go_to_the_most_likely_mean():
    g = torch.Generator().manual_seed(0)
    logpi = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(1000, 4, 3)
    mu = torch.tensor([-3.0, 1.0, 5.0]).expand(1000, 4, 3)
    z = sample_mixture(logpi, mu, torch.zeros(1000, 4, 3), 1e-4, g)
    torch.testing.assert_close(z, torch.ones(1000, 4), atol=0.05, rtol=0)
    z1 = sample_mixture(logpi, mu, torch.full((1000, 4, 3), -6.0), 1.0, g)
    share = [(z1 - m).abs().lt(0.1).float().mean().item() for m in (-3.0, 1.0, 5.0)]
    assert share == pytest.approx([0.2, 0.5, 0.3], abs=0.04)


def test_sequence_forward_equals_single_steps():
    torch.manual_seed(0)
    m = MDNRNN(6, 2, 16, done_head=True, reward_head=True)
    z, a = torch.randn(3, 7, 6), torch.randn(3, 7, 2)
    seq, _ = m(z, a)
    state = None
    for t in range(7):
        out, state = m.step(z[:, t], a[:, t], state)
        for s, o in zip(seq, out):
            torch.testing.assert_close(o[:, 0], s[:, t], atol=1e-5, rtol=1e-5)


def _batch(
    z: torch.Tensor, action: torch.Tensor, terminated: torch.Tensor, lengths: list[int]
) -> dict:
    B, T1, Z = z.shape
    mask = torch.zeros(B, T1 - 1, dtype=torch.bool)
    next_mask = torch.zeros_like(mask)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
        next_mask[b, : n - 1] = True
    return {"mu": z, "logvar": torch.full_like(z, -40.0), "action": action, "terminated": terminated,
            "reward": torch.zeros(B, T1 - 1), "mask": mask, "next_mask": next_mask}  # fmt: skip


def test_learns_a_bimodal_process_and_samples_both_modes():
    torch.manual_seed(0)
    sigma = 0.1
    true_nll = math.log(2) + 0.5 * math.log(2 * math.pi * sigma**2) + 0.5
    cfg = with_overrides(preset("debug"), {"vae.z_dim": 1, "mdnrnn.done_head": False})
    m = MDNRNN(1, 1, 32, 5, done_head=False)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(400):
        z = (torch.randint(0, 2, (32, 21, 1)) * 2 - 1).float() + sigma * torch.randn(32, 21, 1)
        losses, _ = mdnrnn_losses(
            m, _batch(z, torch.zeros(32, 20, 1), torch.zeros(32, 20), [20] * 32), cfg, None, False
        )
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    assert losses["nll"].item() == pytest.approx(true_nll, abs=0.1)
    out, _ = m(z[:, :-1], torch.zeros(32, 20, 1))
    s = sample_mixture(out.logpi, out.mu, out.logsigma, 1.0).flatten()
    assert (s - 1).abs().lt(0.4).float().mean().item() == pytest.approx(0.5, abs=0.08)
    assert (s + 1).abs().lt(0.4).float().mean().item() == pytest.approx(0.5, abs=0.08)


def test_joint_mixture_nll_is_the_whole_vectors_mixture_per_dimension():
    from torch.distributions import Independent

    logpi = torch.log_softmax(torch.randn(4, 6, 1, 5), -1)
    mu, logsigma, x = torch.randn(4, 6, 3, 5), torch.randn(4, 6, 3, 5) * 0.3, torch.randn(4, 6, 3)
    # components over the whole vector: (..., K, Z) diagonal Gaussians
    comp = Independent(Normal(mu.transpose(-1, -2), logsigma.exp().transpose(-1, -2)), 1)
    ref = -MixtureSameFamily(Categorical(logits=logpi[..., 0, :]), comp).log_prob(x)
    got = mdn_nll(logpi, mu, logsigma, x)
    assert got.shape == (4, 6, 1)
    torch.testing.assert_close(got[..., 0], ref / 3)
    # with one component it is the per-dimension mixture (a diagonal Gaussian either way)
    one = torch.zeros(4, 6, 1, 1)
    torch.testing.assert_close(
        mdn_nll(one, mu[..., :1], logsigma[..., :1], x).mean(-1),
        mdn_nll(one.expand(4, 6, 3, 1), mu[..., :1], logsigma[..., :1], x).mean(-1),
    )


def test_joint_mixture_samples_one_component_for_every_dimension():
    g = torch.Generator().manual_seed(0)
    n, Z = 4000, 8
    logpi = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(n, 1, 3)
    mu = torch.tensor([-3.0, 1.0, 5.0]).expand(n, Z, 3)
    logsigma = torch.full((n, Z, 3), -8.0)
    z = sample_mixture(logpi, mu, logsigma, 1.0, g)
    assert z.shape == (n, Z)
    assert (z - z[:, :1]).abs().max().item() < 1e-2  # every dimension from the same component
    share = [(z[:, 0] - m).abs().lt(0.1).float().mean().item() for m in (-3.0, 1.0, 5.0)]
    assert share == pytest.approx([0.2, 0.5, 0.3], abs=0.03)
    # the paper's per-dimension mixture with the same weights mixes components within one z
    per_dim = sample_mixture(logpi.expand(n, Z, 3), mu, logsigma, 1.0, g)
    assert (per_dim - per_dim[:, :1]).abs().max(1).values.gt(1).float().mean().item() > 0.9


def test_a_joint_mixture_m_has_one_weight_vector_and_trains(tmp_path, trained_run):
    m = MDNRNN(6, 2, 16, n_mixtures=4, joint_mixture=True)
    plain = MDNRNN(6, 2, 16, n_mixtures=4)
    assert m.head.out_features == 4 + 2 * 6 * 4 + 1  # K weights, not Z x K; mu, sigma; done
    assert plain.head.out_features == 3 * 6 * 4 + 1
    out, _ = m(torch.randn(3, 7, 6), torch.randn(3, 7, 2))
    assert out.logpi.shape == (3, 7, 1, 4) and out.mu.shape == (3, 7, 6, 4)
    torch.testing.assert_close(out.logpi.exp().sum(-1), torch.ones(3, 7, 1))
    # through the stages: M trains on the debug run's latents, C trains in its dream
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for f in ("mdnrnn.pt", "controller.pt", "es_state.pkl"):
        (run / f).unlink(missing_ok=True)
    cfg = with_overrides(preset("debug"), {"mdnrnn.joint_mixture": True, "mdnrnn.n_mixtures": 8})
    save_config(cfg, run / "config.json")
    train_mdnrnn(run, cfg, progress=False)
    train_controller(run, cfg, progress=False)
    model = load_mdnrnn(run / "mdnrnn.pt", cfg)
    assert model.joint and model.head.out_features == 8 + 2 * cfg.vae.z_dim * 8 + 1
    assert (run / "controller.pt").exists()
    # an M of the other kind is refused by name
    with pytest.raises(WorldModelsError, match="mdnrnn.pt"):
        load_mdnrnn(run / "mdnrnn.pt", with_overrides(cfg, {"mdnrnn.joint_mixture": False}))


def test_done_head_learns_dies_after_k_steps():
    torch.manual_seed(0)
    k = 6
    cfg = preset("debug")
    m = MDNRNN(2, 1, 24, done_head=True)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    term = torch.zeros(16, 10)
    term[:, k - 1] = 1
    for _ in range(300):
        z = torch.randn(16, 11, 2)
        losses, _ = mdnrnn_losses(
            m, _batch(z, torch.zeros(16, 10, 1), term, [k] * 16), cfg, None, False
        )
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    out, _ = m(torch.randn(16, 10, 2), torch.zeros(16, 10, 1))
    p = torch.sigmoid(out.done_logit[:, :k])
    assert (p[:, k - 1] > 0.5).all() and (p[:, : k - 1] < 0.5).all()


def test_padding_changes_no_loss():
    torch.manual_seed(0)
    cfg = with_overrides(preset("debug"), {"mdnrnn.reward_head": True})
    m = MDNRNN(3, 1, 8, done_head=True, reward_head=True)
    z, a = torch.randn(2, 6, 3), torch.randn(2, 5, 1)
    term = torch.zeros(2, 5)
    term[0, 2] = 1
    b1 = _batch(z, a, term, [3, 5])
    pad = {k: v.clone() for k, v in b1.items()}
    pad["mu"][0, 4:] = 99.0
    pad["action"][0, 3:] = -50.0
    pad["terminated"][0, 3:] = 1.0
    pad["reward"][0, 3:] = 7.0
    l1, _ = mdnrnn_losses(m, b1, cfg, torch.Generator().manual_seed(1), False)
    l2, _ = mdnrnn_losses(m, pad, cfg, torch.Generator().manual_seed(1), False)
    for key in ("nll", "done", "reward"):
        torch.testing.assert_close(l1[key], l2[key])


def test_reward_over_weight_costs_only_over_prediction():
    """With reward_over_weight w, a step where M predicts too much costs w times its squared error, one
    where it predicts too little costs the plain squared error."""
    torch.manual_seed(0)
    m = MDNRNN(3, 1, 8, done_head=False, reward_head=True)
    z, a = torch.randn(1, 6, 3), torch.randn(1, 5, 1)
    batch = _batch(z, a, torch.zeros(1, 5), [5])
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    base = with_overrides(preset("debug"), {"mdnrnn.reward_head": True})
    _, out = mdnrnn_losses(m, batch, base, gen(), False)
    pred = out.reward.detach()[0]
    batch["reward"][0] = pred + torch.tensor(
        [1.0, -1.0, 2.0, -2.0, 0.5]
    )  # under, over, under, over, under
    plain, _ = mdnrnn_losses(m, batch, base, gen(), False)
    heavy, _ = mdnrnn_losses(
        m, batch, with_overrides(base, {"mdnrnn.reward_over_weight": 5.0}), gen(), False
    )
    torch.testing.assert_close(plain["reward"], torch.tensor((1 + 1 + 4 + 4 + 0.25) / 5))
    torch.testing.assert_close(heavy["reward"], torch.tensor((1 + 5 + 4 + 20 + 0.25) / 5))


def test_train_resume_and_refusals(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = preset("debug")
    model = load_mdnrnn(run / "mdnrnn.pt", cfg)
    again = load_mdnrnn(run / "mdnrnn.pt", cfg)
    z, a = torch.randn(2, 4, cfg.vae.z_dim), torch.randn(2, 4, 1)
    torch.testing.assert_close(model(z, a)[0].mu, again(z, a)[0].mu, rtol=0, atol=0)
    # resume: an unfinished checkpoint continues to the same final step and weights
    ref_header, ref_blob = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    stop_m_training(run, cfg)
    save_config(cfg, run / "config.json")
    train_mdnrnn(run, cfg, progress=False)
    header, blob = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")
    assert header["step"] == ref_header["step"]
    for k, v in ref_blob["model"].items():
        torch.testing.assert_close(blob["model"][k], v, rtol=0, atol=0)
    # mismatched z sizes between V and M
    save_config(with_overrides(cfg, {"vae.z_dim": 4}), run / "config.json")
    line = one_line_error(cli("train-mdnrnn", "--run-dir", str(run), "--quiet"))
    assert "z" in line and ("latent" in line or "mdnrnn.pt" in line)
    with pytest.raises(Exception, match="z size"):
        load_mdnrnn(run / "mdnrnn.pt", with_overrides(cfg, {"vae.z_dim": 4}))


def test_a_random_stream_saved_on_another_device_type_seeds_one_from_it(tmp_path, capsys):
    # a training stopped on a GPU keeps a CUDA generator's 16-byte state; resumed on the CPU (whose
    # generator state is 5,056 bytes) it continues from a stream seeded from that state, the same each time
    from worldmodels.train.common import restore_generator

    cuda_state = torch.arange(16, dtype=torch.uint8)
    draws = []
    for _ in range(2):
        g = torch.Generator()
        restore_generator(g, cuda_state, tmp_path / "m.pt")
        draws.append(torch.rand(5, generator=g))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 2 and "m.pt" in note[0] and "another device type" in note[0]
    g = torch.Generator()
    restore_generator(g, torch.arange(1, 17, dtype=torch.uint8), tmp_path / "m.pt")
    assert not torch.equal(torch.rand(5, generator=g), draws[0])
    capsys.readouterr()
    # a state of the same device type is restored exactly, without a note
    saved = torch.Generator().manual_seed(3)
    torch.rand(7, generator=saved)
    g = torch.Generator()
    restore_generator(g, saved.get_state(), tmp_path / "m.pt")
    torch.testing.assert_close(
        torch.rand(5, generator=g), torch.rand(5, generator=saved), rtol=0, atol=0
    )
    assert capsys.readouterr().err == ""


def test_reward_head_validation_measures_step_error_and_returns(trained_run):
    """A reward head that predicts Doom's +1 a step exactly: no error, no bias, returns correlate fully;
    one that predicts 0.5: the error and the bias show it."""
    from worldmodels.data.datasets import SequenceStream
    from worldmodels.data.storage import list_episodes
    from worldmodels.models import build_mdnrnn
    from worldmodels.train.mdnrnn import validate
    from worldmodels.utils import STREAM_MDN

    cfg = with_overrides(preset("debug"), {"mdnrnn.reward_head": True, "mdnrnn.seq_len": 16})
    m = cfg.mdnrnn
    # every latent file, cut into pieces of 16 steps: the pieces' returns differ (episodes end mid-piece)
    stream = SequenceStream(list_episodes(trained_run / "latents"), m.seq_len, m.batch_size,
                            m.shuffle_episodes, cfg.seed, STREAM_MDN)  # fmt: skip
    model = build_mdnrnn(cfg, 1)
    for value, mae, bias in ((1.0, 0.0, 0.0), (0.5, 0.5, None)):
        with torch.no_grad():
            model.head.weight[-1].zero_()
            model.head.bias[-1] = value
        res, _ = validate(model, stream, cfg, torch.device("cpu"))
        assert res["mdnrnn/val_reward_mae"] == pytest.approx(mae, abs=1e-6)
        if bias is not None:
            assert res["mdnrnn/val_return_bias"] == pytest.approx(0.0, abs=1e-4)
            assert res["mdnrnn/val_return_corr"] == pytest.approx(1.0, abs=1e-6)
        else:
            assert res["mdnrnn/val_return_bias"] < -1.0  # predicted returns are half the real ones


def test_done_validation_compares_the_calibrated_probability_with_the_death_rate(
    trained_run, tmp_path
):
    """A done head trained with weight w states the odds w times too high: one that says odds w * q / (1 - q)
    everywhere is read, calibrated, as q a step; the death rate is the terminal steps' share."""
    from worldmodels.data.datasets import SequenceStream
    from worldmodels.data.storage import list_episodes
    from worldmodels.models import build_mdnrnn
    from worldmodels.train.mdnrnn import validate
    from worldmodels.utils import STREAM_MDN

    cfg = with_overrides(preset("debug"), {"mdnrnn.done_pos_weight": 4.0})
    m = cfg.mdnrnn
    paths = []
    for i, src in enumerate(
        list_episodes(trained_run / "latents")
    ):  # every other episode ends in death
        ep = dict(np.load(src))
        ep["terminated"][-1], ep["truncated"][-1] = i % 2 == 0, i % 2 == 1
        np.savez(tmp_path / src.name, **ep)
        paths.append(tmp_path / src.name)
    stream = SequenceStream(
        paths, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed, STREAM_MDN
    )
    model = build_mdnrnn(cfg, 1)
    q = 0.02
    with torch.no_grad():
        model.head.weight[-1].zero_()
        model.head.bias[-1] = math.log(4.0 * q / (1 - q))
    res, _ = validate(model, stream, cfg, torch.device("cpu"))
    assert res["mdnrnn/val_done_p_calibrated"] == pytest.approx(q, rel=1e-4)
    ends = [np.load(p)["terminated"] for p in paths]
    rate = sum(float(t.sum()) for t in ends) / sum(len(t) for t in ends)
    assert rate > 0 and res["mdnrnn/val_done_rate"] == pytest.approx(rate)


def test_the_done_head_refit_changes_only_the_done_row_keeps_its_best_and_resumes(
    trained_run, tmp_path
):
    """mdnrnn.done_refit_epochs: after the same training, only the done row of the head differs; its
    held-out done loss is at most the joint head's; a training stopped and resumed gets the same M."""
    from worldmodels.train.mdnrnn import done_row
    from worldmodels.utils import read_metrics

    run = shutil.copytree(trained_run, tmp_path / "run")
    cfg = with_overrides(preset("debug"), {"mdnrnn.done_refit_epochs": 4})
    save_config(cfg, run / "config.json")
    plain = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")[1]["model"]
    (run / "mdnrnn.pt").unlink()
    train_mdnrnn(run, cfg, progress=False)
    refit = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")[1]["model"]
    i = done_row(load_mdnrnn(run / "mdnrnn.pt", cfg))
    for k, v in plain.items():
        if k.startswith("head."):
            rows = [r for r in range(len(v)) if r != i]
            torch.testing.assert_close(refit[k][rows], v[rows], rtol=0, atol=0)
        else:
            torch.testing.assert_close(refit[k], v, rtol=0, atol=0)
    row = [r for r in read_metrics(run) if "mdnrnn/done_refit_val_loss" in r][-1]
    assert row["mdnrnn/done_refit_val_loss"] <= row["mdnrnn/done_refit_joint_val_loss"]
    kept = row["mdnrnn/done_refit_epochs_kept"]
    assert (kept == 0) == torch.equal(refit["head.weight"][i], plain["head.weight"][i])
    # stopped after 2 updates and resumed: the same M, refit included
    stop_m_training(run, cfg)
    train_mdnrnn(run, cfg, progress=False)
    again = load_checkpoint(run / "mdnrnn.pt", "mdnrnn")[1]["model"]
    for k, v in refit.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=0)


def test_a_refit_replaces_a_bad_done_head_by_a_better_one_on_held_out_episodes(trained_run):
    from worldmodels.data.datasets import SequenceStream, split
    from worldmodels.data.storage import list_episodes
    from worldmodels.train.mdnrnn import done_row, refit_done_head
    from worldmodels.utils import STREAM_MDN

    cfg = with_overrides(preset("debug"), {"mdnrnn.done_refit_epochs": 3})
    m, model = cfg.mdnrnn, load_mdnrnn(trained_run / "mdnrnn.pt", preset("debug"))
    i = done_row(model)
    with torch.no_grad():  # a head that calls every step a death
        model.head.weight[i] = 0.0
        model.head.bias[i] = 5.0
    train, val = split(list_episodes(trained_run / "latents"), cfg.seed, cfg.val_fraction)
    streams = [SequenceStream(p, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed, STREAM_MDN)
               for p in (train, val)]  # fmt: skip
    row = refit_done_head(model, *streams, cfg, torch.device("cpu"))
    assert row["mdnrnn/done_refit_epochs_kept"] >= 1
    assert row["mdnrnn/done_refit_val_loss"] < row["mdnrnn/done_refit_joint_val_loss"] - 1.0
    assert model.head.bias[i].item() < 0.1  # the fresh row, not the bad one


def test_self_fed_inputs_are_ms_own_samples_at_the_chosen_steps():
    """mdnrnn.self_feed: step 0 stays the real frame; a chosen step t reads M's sample of z_t drawn from
    its pass over the real z (tau 1), the others the real z_t; about `share` of the steps are chosen."""
    torch.manual_seed(0)
    m = MDNRNN(3, 1, 8)
    z, a = torch.randn(64, 51, 3), torch.randn(64, 50, 1)
    real = z[:, :-1]
    torch.testing.assert_close(
        self_fed(m, z, a, 0.0, torch.Generator().manual_seed(2), False), real
    )
    out, _ = m(real, a)
    own = sample_mixture(out.logpi, out.mu, out.logsigma, 1.0, torch.Generator().manual_seed(2))
    every = self_fed(m, z, a, 1.0, torch.Generator().manual_seed(2), False)
    torch.testing.assert_close(every[:, 0], real[:, 0])
    torch.testing.assert_close(every[:, 1:], own[:, :-1])
    half = self_fed(m, z, a, 0.5, torch.Generator().manual_seed(2), False)
    is_real = (half == real).all(-1)[:, 1:]
    is_own = (half[:, 1:] == own[:, :-1]).all(-1)  # a chosen step holds the same draw as `own`'s
    assert (is_real | is_own).all()
    assert is_own.float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_self_feed_changes_training_losses_not_validation():
    torch.manual_seed(0)
    m = MDNRNN(3, 1, 8, done_head=True)
    batch = _batch(torch.randn(4, 9, 3), torch.randn(4, 8, 1), torch.zeros(4, 8), [8] * 4)
    base = preset("debug")
    fed = with_overrides(base, {"mdnrnn.self_feed": 1.0})

    def nll(cfg):
        return mdnrnn_losses(m, batch, cfg, torch.Generator().manual_seed(1), False)[0]["nll"]

    m.train()
    assert not torch.allclose(nll(base), nll(fed))
    m.eval()
    torch.testing.assert_close(nll(base), nll(fed))
    with pytest.raises(WorldModelsError, match="mdnrnn.self_feed"):
        validate(with_overrides(base, {"mdnrnn.self_feed": 1.5}))
