"""Where dream rollouts start: the first frame's (mu, logvar) of every episode, gathered once (the start
states at any step of an episode, which need M, are dream.any_step_starts).

`encode` writes RUN_DIR/latents/starts.npz after the latent files, so a dream is built from one small file
instead of reading every latent file (2,500 in the doom-cpu run). A shipped agent, which has no latents,
keeps the same arrays in RUN_DIR/latents_starts.npz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldmodels.data.storage import encode_npz, list_episodes, load_npz
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir
from worldmodels.utils import atomic_write_bytes

STARTS_IN_LATENTS = "starts.npz"
"""RUN_DIR/latents/starts.npz: the first frame's (mu, logvar) of every latent file, written by encode."""


def write_dream_starts(run_dir: Path) -> None:
    """Gather every episode's first (mu, logvar) into latents/starts.npz (encode calls this), so that a
    dream is built without reading every latent file. Only files not in the old starts.npz are read."""
    paths = list_episodes(RunDir(run_dir).latents)
    path = RunDir(run_dir).latents / STARTS_IN_LATENTS
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
    path = RunDir(run_dir).latents / STARTS_IN_LATENTS
    if not path.exists():
        return None
    starts = load_npz(path, ("mu", "logvar", "names"), what="dream starts")
    return starts if list(starts["names"]) == [p.name for p in paths] else None


def dream_starts(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of every episode's first frame: where dream rollouts start."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    paths = list_episodes(run.latents)
    if not paths:
        if run.shipped_starts.exists():
            starts = load_npz(run.shipped_starts, ("mu", "logvar"), what="dream starts")
            return starts["mu"], starts["logvar"]
        raise WorldModelsError(f"{run.latents}: no latents; run `worldmodels encode` first")
    starts = _fresh_starts(run_dir, paths)
    if starts is None:  # a run encoded before starts.npz existed, or encode was stopped
        write_dream_starts(run_dir)
        starts = _fresh_starts(run_dir, paths)
        assert starts is not None
    return starts["mu"], starts["logvar"]
