"""The agent in the real env: V encodes the frame, C acts on [z, (c), h], M updates its memory.

One code path for evaluation, real-env fitness, iterative training's collection and rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def round_dir(run_dir: Path, r: int) -> Path:
    """Where round r of iterative training keeps its M, C and CMA-ES state."""
    return Path(run_dir) / "rounds" / str(r)


def model_paths(run_dir: Path, cfg: Config) -> tuple[Path, Path]:
    """(M, C) of the run's agent: those of the last round of iterative training, or the first ones."""
    run_dir = Path(run_dir)
    r = cfg.iterate.rounds
    if r == 0:
        return run_dir / "mdnrnn.pt", run_dir / "controller.pt"
    last = round_dir(run_dir, r)
    if not (last / "done").exists():
        raise WorldModelsError(
            f"{run_dir}: iterative training has not finished its {r} round(s); run `worldmodels iterate`"
        )
    return last / "mdnrnn.pt", last / "controller.pt"


def load_models(
    run_dir: Path, cfg: Config | None = None, device: str = "cpu", mdnrnn: Path | None = None
) -> Models:
    """V, M and the adapter of a run; M is the run's final one (see model_paths) unless given."""
    from worldmodels.train.mdnrnn import load_mdnrnn
    from worldmodels.train.vae import load_vae

    run_dir = Path(run_dir)
    cfg = cfg or load_config(run_dir / "config.json")
    return Models(
        cfg,
        load_vae(run_dir / "vae.pt", cfg, device),
        load_mdnrnn(Path(mdnrnn) if mdnrnn else model_paths(run_dir, cfg)[0], cfg, device),
        adapter_for(cfg.env.id),
    )


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
    `explore` (iterative training's data collection): the per-step chance of handing over to the random
    policy for hold_min..hold_max frames; M still sees the action taken.
    """

    def __init__(self, models: Models, params: np.ndarray, explore: float = 0.0) -> None:
        self.m = models
        self.params = torch.as_tensor(np.asarray(params, np.float32))[None]
        self.out_dim = models.adapter.controller_outputs
        self.explore = explore
        self.random = models.adapter.random_policy(models.cfg.collect) if explore > 0 else None

    def reset(self, seed: int) -> None:
        self.rng = rng_for(seed, 1)
        self.state = self.m.mdnrnn.initial_state(1)
        self.explore_rng, self.exploring = rng_for(seed, 3), 0
        if self.random is not None:
            self.random.reset(rng_for(seed, 4))

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
        action = self.m.adapter.vector_to_action(vec[0].numpy())
        if self.random is not None:
            c = self.m.cfg.collect
            if self.exploring == 0 and self.explore_rng.random() < self.explore:
                self.exploring = int(self.explore_rng.integers(c.hold_min, c.hold_max + 1))
            if self.exploring > 0:
                self.exploring -= 1
                action = self.random(obs)
                vec = torch.as_tensor(self.m.adapter.encode_action(action), dtype=torch.float32)[
                    None
                ]
        _, self.state = self.m.mdnrnn.step(z, vec, self.state)
        return action
