"""Where dream rollouts start: the first frame's (mu, logvar) of every episode, gathered once; or
(`controller.dream_starts any`) real frames at any step, with M's memory of the episode up to there.

`encode` writes RUN_DIR/latents/starts.npz after the latent files, so a dream is built from one small file
instead of reading every latent file (2,500 in the doom-cpu run). A shipped agent, which has no latents,
keeps the same arrays in RUN_DIR/latents_starts.npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldmodels.data.storage import encode_npz, episode_length, list_episodes, load_npz
from worldmodels.errors import WorldModelsError
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import sample_z
from worldmodels.utils import STREAM_DREAM_STARTS, atomic_write_bytes, rng_for

STARTS_FILE = "latents_starts.npz"
"""A shipped agent's dream starts, in place of RUN_DIR/latents."""
STARTS_IN_LATENTS = "starts.npz"
"""RUN_DIR/latents/starts.npz: the first frame's (mu, logvar) of every latent file, written by encode."""


def write_dream_starts(run_dir: Path) -> None:
    """Gather every episode's first (mu, logvar) into latents/starts.npz (encode calls this), so that a
    dream is built without reading every latent file. Only files not in the old starts.npz are read."""
    paths = list_episodes(Path(run_dir) / "latents")
    path = Path(run_dir) / "latents" / STARTS_IN_LATENTS
    if not paths or _fresh_starts(run_dir, paths) is not None:
        return
    known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if path.exists():
        old = load_npz(path, ("mu", "logvar", "names"), what="dream starts")
        known = {str(n): (m, v) for n, m, v in zip(old["names"], old["mu"], old["logvar"])}
    firsts = []
    for p in paths:
        if p.name not in known:
            f = load_npz(p, ("mu", "logvar"), what="latent")
            known[p.name] = (f["mu"][0], f["logvar"][0])
        firsts.append(known[p.name])
    arrays = {
        "mu": np.stack([m for m, _ in firsts]),
        "logvar": np.stack([v for _, v in firsts]),
        "names": np.array([p.name for p in paths]),
    }
    atomic_write_bytes(path, encode_npz(arrays))


def _fresh_starts(run_dir: Path, paths: list[Path]) -> dict[str, np.ndarray] | None:
    """latents/starts.npz if it covers exactly the latent files there now."""
    path = Path(run_dir) / "latents" / STARTS_IN_LATENTS
    if not path.exists():
        return None
    starts = load_npz(path, ("mu", "logvar", "names"), what="dream starts")
    return starts if list(starts["names"]) == [p.name for p in paths] else None


def dream_starts(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of every episode's first frame: where dream rollouts start."""
    run_dir = Path(run_dir)
    paths = list_episodes(run_dir / "latents")
    if not paths:
        if (run_dir / STARTS_FILE).exists():
            starts = load_npz(run_dir / STARTS_FILE, ("mu", "logvar"), what="dream starts")
            return starts["mu"], starts["logvar"]
        raise WorldModelsError(f"{run_dir / 'latents'}: no latents; run `worldmodels encode` first")
    starts = _fresh_starts(run_dir, paths)
    if starts is None:  # a run encoded before starts.npz existed, or encode was stopped
        write_dream_starts(run_dir)
        starts = _fresh_starts(run_dir, paths)
        assert starts is not None
    return starts["mu"], starts["logvar"]


@dataclass(frozen=True)
class StartStates:
    """Dream starts at any step of real episodes: the frame's (mu, logvar), (N, Z), and M's (h, c) after
    the episode's earlier frames and actions, (N, H) each."""

    mu: np.ndarray
    logvar: np.ndarray
    h: np.ndarray
    c: np.ndarray
    episodes: np.ndarray
    """Which latent file (index into list_episodes(RUN_DIR/latents)) each start comes from, (N,)."""
    steps: np.ndarray
    """The step of its episode each start was taken at (0: the first frame), (N,)."""


@torch.no_grad()
def any_step_starts(
    run_dir: Path, mdnrnn: MDNRNN, n: int, seed: int, device: torch.device, chunk: int = 256
) -> StartStates:
    """n start states drawn uniformly over every step of the run's latent episodes (with replacement).
    M is fed each chosen episode from its first frame, z sampled from (mu, logvar) as in training and in
    the real-env agent, and its (h, c) is read just before the chosen step (zero at step 0)."""
    paths = list_episodes(Path(run_dir) / "latents")
    if not paths:
        raise WorldModelsError(f"{run_dir / 'latents'}: no latents; run `worldmodels encode` first")
    lengths = np.array([episode_length(p) for p in paths])
    rng = rng_for(seed, STREAM_DREAM_STARTS)
    flat = rng.choice(int(lengths.sum()), size=n, replace=True)
    episode = np.searchsorted(np.cumsum(lengths), flat, side="right")
    step = flat - np.concatenate([[0], np.cumsum(lengths)[:-1]])[episode]
    Z, H = mdnrnn.z_dim, mdnrnn.hidden
    out = StartStates(np.zeros((n, Z), np.float32), np.zeros((n, Z), np.float32),
                      np.zeros((n, H), np.float32), np.zeros((n, H), np.float32), episode, step)  # fmt: skip
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    wanted = np.unique(episode)
    for part in range(0, len(wanted), chunk):
        eps = wanted[part : part + chunk]
        data = [load_npz(paths[e], ("mu", "logvar", "action"), what="latent") for e in eps]
        # which start (index into out) reads which row b of the batch after t steps of memory
        starts = np.flatnonzero(np.isin(episode, eps))
        row_of = np.searchsorted(eps, episode[starts])
        out.mu[starts] = [data[b]["mu"][step[i]] for b, i in zip(row_of, starts, strict=True)]
        out.logvar[starts] = [
            data[b]["logvar"][step[i]] for b, i in zip(row_of, starts, strict=True)
        ]
        T = int(step[starts].max())  # steps of memory needed
        if T == 0:
            continue
        B, A = len(eps), data[0]["action"].shape[1]
        mu = np.zeros((B, T, Z), np.float32)
        logvar = np.zeros((B, T, Z), np.float32)
        action = np.zeros((B, T, A), np.float32)
        for b, d in enumerate(data):
            k = min(T, len(d["action"]))
            mu[b, :k], logvar[b, :k], action[b, :k] = d["mu"][:k], d["logvar"][:k], d["action"][:k]
        z = sample_z(torch.from_numpy(mu), torch.from_numpy(logvar), gen).to(device)
        a = torch.from_numpy(action).to(device)
        state = mdnrnn.initial_state(B, device)
        for t in range(1, T + 1):
            state = mdnrnn.advance(z[:, t - 1], a[:, t - 1], state)
            hit = starts[step[starts] == t]
            if len(hit):
                rows = torch.as_tensor(row_of[step[starts] == t], device=device)
                out.h[hit] = state[0][0, rows].float().cpu().numpy()
                out.c[hit] = state[1][0, rows].float().cpu().numpy()
    return out
