"""Train V on frames streamed from the run's episodes; then encode every frame's (mu, logvar)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from worldmodels.config import Config
from worldmodels.data.datasets import FrameStream, prefetched, split
from worldmodels.data.starts import write_dream_starts
from worldmodels.data.storage import encode_npz, episode_path, list_episodes, load_episode, load_npz
from worldmodels.envs import FRAME, adapter_class
from worldmodels.errors import WorldModelsError
from worldmodels.models.checkpoints import check_vae_header, load_vae
from worldmodels.models.vae import ConvVAE, frames_to_tensor, reconstruct, vae_loss
from worldmodels.rundir import RunDir, remove_stale_temporaries
from worldmodels.train.common import Trainer
from worldmodels.utils import (
    STREAM_VAE,
    Metrics,
    Stopwatch,
    atomic_write_bytes,
    autocast,
    checkpoint_finished,
    resolve_device,
    seed_for,
    usable_cores,
    use_bf16,
)

VAL_FRAMES = 500


def episodes_of(run_dir: Path) -> list[Path]:
    paths = list_episodes(RunDir(run_dir).episodes)
    if not paths:
        raise WorldModelsError(
            f"{Path(run_dir) / 'episodes'}: no episodes; run `worldmodels collect` first"
        )
    return paths


def validation_frames(paths: list[Path], n: int = VAL_FRAMES) -> np.ndarray:
    """Up to n frames spread evenly over the held-out episodes (fixed, for comparable losses)."""
    per = max(1, -(-n // max(1, len(paths))))
    frames = []
    for p in paths:
        obs = load_episode(p)["obs"]
        frames.append(obs[np.linspace(0, len(obs) - 1, min(per, len(obs))).astype(int)])
        if sum(len(f) for f in frames) >= n:
            break
    return np.concatenate(frames)[:n] if frames else np.zeros((0, 64, 64, 3), np.uint8)


def pixel_weights(cfg: Config, device: torch.device) -> torch.Tensor | None:
    """The weights of V's squared error per pixel: None for the paper's loss (vae.indicator_weight 1), else
    vae.indicator_weight on the env's indicator pixels and 1 elsewhere."""
    w = cfg.vae.indicator_weight
    if w == 1:
        return None
    box = adapter_class(cfg.env.id).indicator_box
    if box is None:
        raise WorldModelsError(
            f"vae.indicator_weight {w}: {cfg.env.id} has no indicator bar to weight"
        )
    weights = torch.ones(1, 1, FRAME, FRAME, device=device)
    weights[..., box[0], box[1]] = w
    return weights


@torch.no_grad()
def validation_loss(model: ConvVAE, frames: np.ndarray, cfg: Config, device: torch.device) -> float:
    """Mean loss over held-out frames, decoding mu (no sampling: the number is reproducible)."""
    model.eval()
    total, weights = 0.0, pixel_weights(cfg, device)
    for i in range(0, len(frames), 250):
        x = frames_to_tensor(torch.from_numpy(frames[i : i + 250]).to(device))
        with autocast(device, cfg.vae.amp):
            mu, logvar = model.encode(x)
            recon = model.decode(mu)
        loss, _, _ = vae_loss(x, recon, mu, logvar, cfg.vae.kl_tolerance, weights)
        total += float(loss) * len(x)
    model.train()
    return total / max(1, len(frames))


def train_vae(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, float]:
    """V on frames streamed from the run's episodes (the paper's loss with its KL floor), resumable."""
    run_dir = Path(run_dir)
    v = cfg.vae
    device = resolve_device(cfg.device)
    torch.manual_seed(seed_for(cfg.seed, STREAM_VAE))
    model = ConvVAE(v.z_dim).to(device)
    trainer = Trainer(
        RunDir(run_dir).vae, "vae", "V", cfg, model, torch.optim.Adam(model.parameters(), lr=v.lr),
        torch.Generator(device=device).manual_seed(seed_for(cfg.seed, STREAM_VAE, 1)),
        v.lr, v.lr_final, v.checkpoint_every_s,
    )  # fmt: skip
    pos = trainer.resume(check_vae_header)
    if pos.finished:
        return {"vae/step": pos.step}
    weights = pixel_weights(cfg, device)
    channels_last = use_bf16(device, v.amp) and device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)

    train_paths, val_paths = split(episodes_of(run_dir), cfg.seed, cfg.val_fraction)
    stream = FrameStream(train_paths, v.batch_size, v.shuffle_episodes, cfg.seed, STREAM_VAE)
    total = sum(stream.batches_in_epoch(e) for e in range(v.epochs))
    total = min(total, v.max_updates) if v.max_updates else total
    val_frames = validation_frames(val_paths)

    def update(frames: np.ndarray, step: int) -> tuple[torch.Tensor, dict[str, float], int]:
        x = frames_to_tensor(torch.from_numpy(frames).to(device), channels_last)
        with autocast(device, v.amp):
            recon, mu, logvar = model(x, trainer.generator)
        loss, recon_err, kl = vae_loss(x, recon, mu, logvar, v.kl_tolerance, weights)
        return (
            loss,
            {"vae/loss": loss.item(), "vae/recon": recon_err.item(), "vae/kl": kl.item()},
            len(x),
        )

    def validate() -> dict[str, float]:
        return (
            {"vae/val_loss": validation_loss(model, val_frames, cfg, device)}
            if len(val_frames)
            else {}
        )

    metrics = Metrics(run_dir, "train-vae", cfg.tensorboard)
    last = trainer.run(
        pos, total, lambda e, skip: stream.epoch(e, skip=skip), update, metrics, "train-vae", progress,
        "images_per_s", validate, val_every=max(1, total // 10), validate_each_epoch=True,
    )  # fmt: skip
    if len(val_frames):
        save_reconstructions(RunDir(run_dir).reconstructions, model, val_frames, device)
    metrics.close()
    return {"vae/step": pos.step, "vae/val_loss": last.get("vae/val_loss", float("nan")), **last}


def save_reconstructions(
    path: Path, model: ConvVAE, frames: np.ndarray, device, n: int = 8
) -> None:
    """Held-out frames (top row) over their reconstructions (bottom row), as a PNG, 2x enlarged."""
    pick = frames[np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)]
    grid = np.concatenate(
        [np.concatenate(list(pick), 1), np.concatenate(list(reconstruct(model, pick, device)), 1)],
        0,
    )
    grid = grid.repeat(2, 0).repeat(2, 1)
    atomic_write_bytes(path, iio.imwrite("<bytes>", grid, extension=".png"))


# --------------------------------------------------------------------------------------------------- latents


def latent_path(run_dir: Path, index: int) -> Path:
    return episode_path(RunDir(run_dir).latents, index)


def vae_done(run_dir: Path, cfg: Config) -> bool:
    return checkpoint_finished(RunDir(run_dir).vae, "vae")


def encode_done(run_dir: Path, cfg: Config) -> bool:
    return RunDir(run_dir).latents.is_dir() and not missing_latents(run_dir)


def missing_latents(run_dir: Path) -> list[Path]:
    return [
        p for p in list_episodes(RunDir(run_dir).episodes)
        if not latent_path(run_dir, int(p.stem[3:])).exists()
    ]  # fmt: skip


@torch.no_grad()
def encode_frames(model: ConvVAE, obs: np.ndarray, device, amp: bool, batch: int = 500):
    """uint8 (T, 64, 64, 3) -> mu, logvar, each float32 (T, Z)."""
    mus, logvars = [], []
    for i in range(0, len(obs), batch):
        x = frames_to_tensor(torch.from_numpy(obs[i : i + batch]).to(device))
        with autocast(torch.device(device), amp):
            mu, logvar = model.encode(x)
        mus.append(mu.float().cpu().numpy())
        logvars.append(logvar.float().cpu().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


def encode_latents(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, float]:
    """Write RUN_DIR/latents/ep_N.npz (mu, logvar per frame, plus the episode's actions, rewards and ends)
    for every episode that has none yet: M resamples z from these every batch, as the paper does."""
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    model = load_vae(RunDir(run_dir).vae, cfg, device)
    RunDir(run_dir).latents.mkdir(exist_ok=True)
    remove_stale_temporaries(RunDir(run_dir).latents)
    todo = missing_latents(run_dir)
    clock, frames = Stopwatch(), 0
    # episodes are read and inflated on threads ahead of V (on a GPU, one thread reading was the limit)
    loads = [lambda p=p: load_episode(p) for p in todo]
    episodes = prefetched(loads, depth=min(4, usable_cores()))
    for p, ep in tqdm(zip(todo, episodes, strict=True), total=len(todo), desc="encode", unit="ep",
                      disable=not progress, dynamic_ncols=True):  # fmt: skip
        mu, logvar = encode_frames(model, ep["obs"], device, cfg.vae.amp)
        arrays = {k: v for k, v in ep.items() if k != "obs"}
        atomic_write_bytes(
            latent_path(run_dir, int(p.stem[3:])),
            encode_npz({"mu": mu, "logvar": logvar, **arrays}),
        )
        frames += len(mu)
    write_dream_starts(run_dir)
    if todo:
        Metrics(run_dir, "encode").log(len(todo), **{"perf/encode_frames_per_s": frames / clock()})
    return {"encode/episodes": len(todo)}


def load_latents(path: Path) -> dict[str, np.ndarray]:
    from worldmodels.data.datasets import LATENT_KEYS

    return load_npz(path, LATENT_KEYS, what="latent")
