"""The three models: V (ConvVAE), M (MDNRNN) and C (linear controller), built from a config."""

from __future__ import annotations

from worldmodels.config import Config
from worldmodels.models.controller import Controller, n_params
from worldmodels.models.mdnrnn import MDNRNN, MDNRNNEnsemble
from worldmodels.models.vae import ConvVAE

__all__ = [
    "MDNRNN",
    "ConvVAE",
    "Controller",
    "MDNRNNEnsemble",
    "build_mdnrnn",
    "controller_dims",
    "model_sizes",
]


def build_mdnrnn(cfg: Config, action_dim: int) -> MDNRNN | MDNRNNEnsemble:
    """M: one MDNRNN (the paper), or an ensemble of `mdnrnn.members` of them (each initialised in turn
    from torch's current random state)."""
    m = cfg.mdnrnn

    def one() -> MDNRNN:
        return MDNRNN(
            cfg.vae.z_dim, action_dim, m.hidden, m.n_mixtures, m.done_head, m.reward_head,
            m.joint_mixture, m.dropout,
        )  # fmt: skip

    if m.members == 1:
        return one()
    return MDNRNNEnsemble([one() for _ in range(m.members)])


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
