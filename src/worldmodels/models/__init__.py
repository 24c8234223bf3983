"""The three models: V (ConvVAE), M (MDNRNN) and C (linear controller), built from a config."""

from __future__ import annotations

from worldmodels.config import Config
from worldmodels.models.controller import Controller, n_params
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE

__all__ = ["MDNRNN", "ConvVAE", "Controller", "build_mdnrnn", "controller_dims", "model_sizes"]


def build_mdnrnn(cfg: Config, action_dim: int) -> MDNRNN:
    m = cfg.mdnrnn
    return MDNRNN(cfg.vae.z_dim, action_dim, m.hidden, m.n_mixtures, m.done_head, m.reward_head)


def controller_dims(cfg: Config, out_dim: int) -> tuple[int, int]:
    """C's input is [z, c, h] with use_cell (the paper's Doom) or [z, h] (CarRacing)."""
    in_dim = cfg.vae.z_dim + cfg.mdnrnn.hidden * (2 if cfg.controller.use_cell else 1)
    return in_dim, out_dim


def model_sizes(cfg: Config) -> dict[str, int]:
    from worldmodels.envs import adapter_for

    adapter = adapter_for(cfg.env.id)

    def count(m) -> int:
        return sum(p.numel() for p in m.parameters())

    in_dim, out_dim = controller_dims(cfg, adapter.controller_outputs)
    return {
        "vae_params": count(ConvVAE(cfg.vae.z_dim)),
        "mdnrnn_params": count(build_mdnrnn(cfg, adapter.action_dim)),
        "controller_params": n_params(in_dim, out_dim, cfg.controller.bias),
    }
