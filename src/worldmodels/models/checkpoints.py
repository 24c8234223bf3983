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


def check_vae_header(path: Path, cfg: Config) -> dict:
    header = read_header(path, "vae")
    z = header["config"]["vae"]["z_dim"]
    if z != cfg.vae.z_dim:
        raise WorldModelsError(
            f"{path}: V has z_dim {z}, this run's config says vae.z_dim {cfg.vae.z_dim}"
        )
    return header


def check_mdnrnn_header(path: Path, cfg: Config) -> dict:
    header = read_header(path, "mdnrnn")
    z = header["config"]["vae"]["z_dim"]
    if z != cfg.vae.z_dim:
        raise WorldModelsError(
            f"{path}: M was trained on z size {z}, but V's z_dim is {cfg.vae.z_dim}"
        )
    hidden = header["config"]["mdnrnn"]["hidden"]
    if hidden != cfg.mdnrnn.hidden:
        raise WorldModelsError(
            f"{path}: M has {hidden} units, this run's mdnrnn.hidden is {cfg.mdnrnn.hidden}"
        )
    members = header["config"]["mdnrnn"].get("members", 1)
    if members != cfg.mdnrnn.members:
        raise WorldModelsError(
            f"{path}: M has {members} member(s), this run's mdnrnn.members is {cfg.mdnrnn.members}"
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
