"""Loading trained V and M from their checkpoints (written by train/), checked against the run's config:
a truncated file, another z size, M's units or members, or an unfinished training is a one-line error
naming the file. Beside the models, so that playing, the dream and the API load them without importing
training code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from worldmodels.config import Config
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNN, MDNRNNEnsemble, build_mdnrnn
from worldmodels.models.vae import ConvVAE
from worldmodels.utils import load_checkpoint, read_header


def load_weights(path: Path, kind: str, model: torch.nn.Module) -> dict[str, Any]:
    """Put a checkpoint's model weights into `model`; returns the checkpoint's whole blob (header first
    checked), so a trainer can restore its optimiser and generator from it too."""
    _, blob = load_checkpoint(path, kind)
    try:
        model.load_state_dict(blob["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise WorldModelsError(f"{path}: does not match this run's {kind} ({first})") from None
    return blob


def _checked_header(path: Path, kind: str, cfg: Config) -> dict:
    """The header of a V or M checkpoint whose z size is the run's."""
    header = read_header(path, kind)
    z = header["config"]["vae"]["z_dim"]
    if z != cfg.vae.z_dim:
        what = "V has z_dim" if kind == "vae" else "M was trained on z size"
        raise WorldModelsError(
            f"{path}: {what} {z}, this run's config says vae.z_dim {cfg.vae.z_dim}"
        )
    return header


def check_vae_header(path: Path, cfg: Config) -> dict:
    return _checked_header(path, "vae", cfg)


def check_mdnrnn_header(path: Path, cfg: Config) -> dict:
    header = _checked_header(path, "mdnrnn", cfg)
    saved = header["config"]["mdnrnn"]
    for field, have, unit in (("hidden", saved["hidden"], "units"),
                              ("members", saved.get("members", 1), "member(s)")):  # fmt: skip
        want = getattr(cfg.mdnrnn, field)
        if have != want:
            raise WorldModelsError(
                f"{path}: M has {have} {unit}, this run's mdnrnn.{field} is {want}"
            )
    return header


def load_vae(path: Path, cfg: Config, device: torch.device | str = "cpu") -> ConvVAE:
    """A trained V for this run's config."""
    header = check_vae_header(path, cfg)
    model = ConvVAE(cfg.vae.z_dim)
    load_weights(path, "vae", model)
    if not header.get("finished"):
        raise WorldModelsError(
            f"{path}: V's training has not finished; rerun `worldmodels train-vae`"
        )
    return model.to(device).eval()


def load_mdnrnn(
    path: Path, cfg: Config, device: torch.device | str = "cpu"
) -> MDNRNN | MDNRNNEnsemble:
    """A trained M matching this run's V (z size) and config."""
    header = check_mdnrnn_header(path, cfg)
    model = build_mdnrnn(cfg, header["action_dim"])
    load_weights(path, "mdnrnn", model)
    if not header.get("finished"):
        raise WorldModelsError(
            f"{path}: M's training has not finished; rerun `worldmodels train-mdnrnn`"
        )
    return model.to(device).eval()
