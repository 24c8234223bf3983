"""The agent in the real env: V encodes the frame, C acts on [z, (c), h], M updates its memory.

One code path for evaluation, real-env fitness, and rendering. Models are loaded once per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.config import Config, load_config
from worldmodels.envs import Adapter, adapter_for
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNN, ConvVAE, controller_dims
from worldmodels.models import controller as C
from worldmodels.models.vae import frames_to_tensor
from worldmodels.utils import load_checkpoint, rng_for


@dataclass
class Models:
    cfg: Config
    vae: ConvVAE
    mdnrnn: MDNRNN
    adapter: Adapter


def load_models(run_dir: Path, cfg: Config | None = None, device: str = "cpu") -> Models:
    from worldmodels.train.mdnrnn import load_mdnrnn
    from worldmodels.train.vae import load_vae

    run_dir = Path(run_dir)
    cfg = cfg or load_config(run_dir / "config.json")
    return Models(
        cfg,
        load_vae(run_dir / "vae.pt", cfg, device),
        load_mdnrnn(run_dir / "mdnrnn.pt", cfg, device),
        adapter_for(cfg.env.id),
    )


@lru_cache(maxsize=2)
def worker_models(run_dir: str) -> Models:
    """Per worker process: V and M loaded once, reused for every task; one thread per worker."""
    torch.set_num_threads(1)
    return load_models(Path(run_dir))


def save_controller(path: Path, params: np.ndarray, header: dict[str, Any]) -> None:
    from worldmodels.utils import save_checkpoint

    save_checkpoint(path, {"kind": "controller", **header}, {"params": torch.as_tensor(params)})


def load_controller(path: Path, cfg: Config) -> np.ndarray:
    header, blob = load_checkpoint(path, "controller")
    params = blob["params"].numpy().astype(np.float32)
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    want = C.n_params(in_dim, out_dim, cfg.controller.bias)
    if params.shape != (want,):
        raise WorldModelsError(
            f"{path}: controller has {params.size} parameters, this run's C needs {want}"
        )
    if not header.get("finished"):
        raise WorldModelsError(
            f"{path}: C's training has not finished; rerun `worldmodels train-controller`"
        )
    return params


class Agent:
    """Acts in the real env: `reset(seed)` at the start of an episode, then `agent(obs) -> env action`.

    z is sampled from V's posterior (as M was trained on sampled z), with the episode's own seed.
    """

    def __init__(self, models: Models, params: np.ndarray) -> None:
        self.m = models
        self.params = torch.as_tensor(np.asarray(params, np.float32))[None]
        self.out_dim = models.adapter.controller_outputs

    def reset(self, seed: int) -> None:
        self.rng = rng_for(seed, 1)
        self.state = self.m.mdnrnn.initial_state(1)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> Any:
        cfg = self.m.cfg
        mu, logvar = self.m.vae.encode(frames_to_tensor(torch.from_numpy(obs[None])))
        eps = torch.from_numpy(self.rng.standard_normal(mu.shape).astype(np.float32))
        z = mu + torch.exp(0.5 * logvar) * eps
        h, c = self.state[0][0], self.state[1][0]
        x = torch.cat([z, c, h] if cfg.controller.use_cell else [z, h], dim=-1)
        a = C.act(self.params, x, self.out_dim, cfg.controller.bias)
        vec = self.m.adapter.controller_to_vector(a)
        _, self.state = self.m.mdnrnn.step(z, vec, self.state)
        return self.m.adapter.vector_to_action(vec[0].numpy())
