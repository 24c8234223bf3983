"""V: sizes, shapes, the loss, learning, checkpoints, resume and refusals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from worldmodels.config import preset, save_config, with_overrides
from worldmodels.data.datasets import prefetched
from worldmodels.models.checkpoints import load_vae
from worldmodels.models.vae import ConvVAE, frames_to_tensor, vae_loss
from worldmodels.models.vae import kl_divergence as our_kl
from worldmodels.train.vae import encode_frames, encode_latents, train_vae
from worldmodels.utils import load_checkpoint, resolve_device

from .conftest import cli, one_line_error


@pytest.mark.parametrize("z, count", [(32, 4_348_547), (64, 4_446_915)])
def test_parameter_counts_match_the_paper(z, count):
    assert sum(p.numel() for p in ConvVAE(z).parameters()) == count


def test_shapes():
    vae = ConvVAE(32)
    x = torch.rand(5, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (5, 32)
    assert 0 <= recon.min() and recon.max() <= 1
    assert frames_to_tensor(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, 3, 64, 64)


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(7, 16), torch.randn(7, 16)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0, 1)).sum(1)
    torch.testing.assert_close(our_kl(mu, logvar), ref)


def test_kl_floor_is_per_image():
    x = torch.rand(2, 3, 64, 64)
    mu = torch.zeros(2, 8)
    _, _, kl = vae_loss(x, x, mu, torch.zeros(2, 8), kl_tolerance=0.5)
    loss, _, _ = vae_loss(x, x, mu, torch.zeros(2, 8), kl_tolerance=0.5)
    assert kl.item() == 0 and loss.item() == pytest.approx(0.5 * 8)


def test_a_few_hundred_steps_on_a_fixed_batch_cut_the_loss(collected_run):
    from worldmodels.data.storage import list_episodes, load_episode

    torch.manual_seed(0)
    frames = load_episode(list_episodes(collected_run / "episodes")[0])["obs"][::4][:12]
    x = frames_to_tensor(torch.from_numpy(np.ascontiguousarray(frames)))
    vae = ConvVAE(8)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(100):
        recon, mu, logvar = vae(x)
        loss, _, _ = vae_loss(x, recon, mu, logvar, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])


def test_training_streams_episodes_saves_and_loads_identically(collected_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(collected_run, run)
    cfg = preset("debug")
    result = train_vae(run, cfg, progress=False)
    assert result["vae/step"] > 0 and np.isfinite(result["vae/val_loss"])
    assert (run / "reconstructions.png").stat().st_size > 0
    a, b = load_vae(run / "vae.pt", cfg), load_vae(run / "vae.pt", cfg)
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(a.encode(x), b.encode(x), rtol=0, atol=0)
    encode_latents(run, cfg, progress=False)
    lat = np.load(run / "latents" / "ep_000000.npz")
    ep = np.load(run / "episodes" / "ep_000000.npz")
    assert lat["mu"].shape == lat["logvar"].shape == (len(ep["obs"]), cfg.vae.z_dim)
    np.testing.assert_array_equal(lat["action"], ep["action"])
    # episodes are read ahead on threads and latents written on another: each file is still its own
    # episode's, exactly as encoding that episode alone gives
    device = resolve_device(cfg.device)  # encode_latents' device (CUDA where there is one)
    a = a.to(device)
    for path in sorted((run / "episodes").glob("ep_*.npz")):
        ep = np.load(path)
        lat = np.load(run / "latents" / path.name)
        mu, logvar = encode_frames(a, ep["obs"], device, cfg.vae.amp)
        np.testing.assert_array_equal(lat["mu"], mu)
        np.testing.assert_array_equal(lat["logvar"], logvar)
        for k in ("action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(lat[k], ep[k])


def test_prefetched_yields_in_order_with_a_bounded_number_in_flight():
    import threading

    lock, running, most = threading.Lock(), [0], [0]

    def load(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return i

    loads = [lambda i=i: load(i) for i in range(20)]
    assert list(prefetched(loads, depth=3)) == list(range(20))
    assert 2 <= most[0] <= 3
    assert list(prefetched([], depth=3)) == []


def _weights(path):
    _, blob = load_checkpoint(path, "vae")
    return blob["model"]


def test_resume_after_sigkill_matches_an_uninterrupted_run(collected_run, tmp_path):
    cfg = with_overrides(preset("debug"), {"vae.epochs": 2, "vae.checkpoint_every_s": 0.0})
    ref = tmp_path / "ref"
    shutil.copytree(collected_run, ref)
    save_config(cfg, ref / "config.json")
    train_vae(ref, cfg, progress=False)

    run = tmp_path / "killed"
    shutil.copytree(collected_run, run)
    save_config(cfg, run / "config.json")
    cmd = [sys.executable, "-m", "worldmodels.cli", "train-vae", "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "vae.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    header, _ = load_checkpoint(run / "vae.pt", "vae")
    assert not header["finished"], "the kill should land mid-training"
    assert cli(*cmd[3:]).returncode == 0
    h_ref, _ = load_checkpoint(ref / "vae.pt", "vae")
    h_run, _ = load_checkpoint(run / "vae.pt", "vae")
    assert h_run["step"] == h_ref["step"] and h_run["finished"]
    for k, v in _weights(ref / "vae.pt").items():
        torch.testing.assert_close(_weights(run / "vae.pt")[k], v, rtol=0, atol=0)


def test_truncated_or_mismatched_checkpoint_is_refused_by_name(collected_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(collected_run, run)
    cfg = preset("debug")
    train_vae(run, cfg, progress=False)
    good = (run / "vae.pt").read_bytes()
    (run / "vae.pt").write_bytes(good[: len(good) // 2])
    for _ in range(2):  # finished or not, a rerun never trains over it
        line = one_line_error(cli("train-vae", "--run-dir", str(run), "--quiet"))
        assert "vae.pt" in line
    (run / "vae.pt").write_bytes(good)
    other = with_overrides(cfg, {"vae.z_dim": 16})
    save_config(other, run / "config.json")
    line = one_line_error(cli("train-vae", "--run-dir", str(run), "--quiet"))
    assert "vae.pt" in line and "z_dim" in line
    assert (run / "vae.pt").read_bytes() == good


def test_nan_loss_stops_with_a_message_and_keeps_the_checkpoint(collected_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(collected_run, run)
    cfg = with_overrides(
        preset("debug"), {"vae.lr": 1e30, "vae.epochs": 20, "vae.checkpoint_every_s": 0.0}
    )
    save_config(cfg, run / "config.json")
    line = one_line_error(cli("train-vae", "--run-dir", str(run), "--quiet"))
    assert "became nan" in line or "became inf" in line
    if (run / "vae.pt").exists():
        header, blob = load_checkpoint(run / "vae.pt", "vae")
        assert all(torch.isfinite(v).all() for v in blob["model"].values())


@pytest.mark.parametrize("native", [True, False])
def test_amp_means_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native):
    """vae.amp / mdnrnn.amp on a CPU without AVX512-BF16 or AMX: fp32 (emulated bf16 trained V 30x slower
    on an AVX2-only EPYC, and oneDNN there had no bf16 LSTM); amp off: fp32 everywhere."""
    from worldmodels import utils

    monkeypatch.setattr(utils, "bf16_native", lambda device_type: native)
    a, cpu = torch.rand(4, 4), torch.device("cpu")
    with utils.autocast(cpu, True):
        assert (a @ a).dtype == (torch.bfloat16 if native else torch.float32)
    with utils.autocast(cpu, False):
        assert (a @ a).dtype == torch.float32
    assert utils.use_bf16(cpu, True) is native and utils.use_bf16(cpu, False) is False


def test_indicator_weight_weights_the_indicator_pixels_only():
    """vae.indicator_weight w: CarRacing's full-frame speed and ABS bars count w times in V's squared error,
    every other pixel once; 1 is the paper's loss; refused for the paper's frame and for an env without a bar."""
    from worldmodels.config import validate
    from worldmodels.errors import WorldModelsError
    from worldmodels.train.vae import pixel_weights

    cpu = torch.device("cpu")
    cfg = with_overrides(
        preset("carracing-cpu"), {"env.frame": "full", "vae.indicator_weight": 30.0}
    )
    w = pixel_weights(cfg, cpu)
    assert w.shape == (1, 1, 64, 64) and w[0, 0, 56:, 7:18].unique().tolist() == [30.0]
    assert float(w.sum()) == 64 * 64 - 8 * 11 + 30 * 8 * 11
    assert pixel_weights(with_overrides(cfg, {"vae.indicator_weight": 1.0}), cpu) is None

    torch.manual_seed(0)
    x, recon = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    mu, logvar = torch.zeros(2, 32), torch.zeros(2, 32)
    err = (recon - x).pow(2)
    _, weighted, _ = vae_loss(x, recon, mu, logvar, 0.5, w)
    _, plain, _ = vae_loss(x, recon, mu, logvar, 0.5)
    extra = 29 * err[..., 56:, 7:18].sum((1, 2, 3)).mean()
    torch.testing.assert_close(weighted, plain + extra)

    with pytest.raises(WorldModelsError, match="vae.indicator_weight needs env.frame full"):
        validate(with_overrides(cfg, {"env.frame": "paper"}))
    doom = with_overrides(preset("debug"), {"env.frame": "full", "vae.indicator_weight": 30.0})
    with pytest.raises(WorldModelsError, match="has no indicator bar"):
        pixel_weights(doom, cpu)
