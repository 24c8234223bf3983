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
from worldmodels.utils import autocast, load_checkpoint, rng_for


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


V_MIN_BATCH = 4
"""V encodes at least this many frames at once (the last frame repeated). In fp32, oneDNN computes a
frame's convolutions the same way in every batch of 4 or more frames, but not in batches of 1 to 3
(measured on this project's CPUs: batch 1 differs from batch 16 by about 1e-8, batches 4..64 agree bit for
bit); in bf16 every batch size agreed. Padding makes an env's z the same whether 1 or 16 envs are alive,
so a batched agent plays exactly the episodes one env at a time would."""


class BatchedAgent:
    """C acting in N real envs at once: V encodes the frames of every live env in one batch (in bf16 where V
    was trained and the latents encoded in bf16, `vae.amp`, so C and M see the z they were trained on),
    each env's z is sampled from V's posterior with that episode's own random stream, C acts per env (each env may have its
    own parameters), and M advances every env's memory in one batch.

    `explore` (iterative training's data collection): the per-step chance of handing an env over to the
    random policy for hold_min..hold_max frames; M still sees the action taken.
    """

    def __init__(self, models: Models, params: np.ndarray, explore: float = 0.0) -> None:
        self.m = models
        self.params = torch.as_tensor(np.atleast_2d(np.asarray(params, np.float32)))
        self.out_dim = models.adapter.controller_outputs
        self.explore = explore

    def reset(self, seeds: list[int]) -> None:
        """Start one episode per env, env i with seeds[i] (the env's own seed, as one env at a time)."""
        n = len(seeds)
        if len(self.params) not in (1, n):
            raise ValueError(f"{len(self.params)} parameter rows for {n} envs")
        self.rows_params = self.params.expand(n, -1) if len(self.params) == 1 else self.params
        self.rngs = [rng_for(s, 1) for s in seeds]
        self.h, self.c = self.m.mdnrnn.initial_state(n)
        self.explore_rngs = [rng_for(s, 3) for s in seeds]
        self.exploring = [0] * n
        self.random = []
        if self.explore > 0:
            for s in seeds:
                policy = self.m.adapter.random_policy(self.m.cfg.collect)
                policy.reset(rng_for(s, 4))
                self.random.append(policy)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rows: list[int]) -> list[Any]:
        """Frames (k, 64, 64, 3) of the envs `rows` (k of the N) -> their env actions."""
        cfg, adapter, k = self.m.cfg, self.m.adapter, len(rows)
        frames = torch.from_numpy(np.ascontiguousarray(obs))
        if k < V_MIN_BATCH:
            frames = torch.cat([frames, frames[-1:].expand(V_MIN_BATCH - k, -1, -1, -1)])
        with autocast(
            torch.device("cpu"), cfg.vae.amp
        ):  # as `encode` made the latents M learned from
            mu, logvar = self.m.vae.encode(frames_to_tensor(frames))
        mu, logvar = mu[:k].float(), logvar[:k].float()
        eps = np.stack([self.rngs[i].standard_normal(mu.shape[1]) for i in rows]).astype(np.float32)
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
        h, c = self.h[:, rows], self.c[:, rows]
        x = torch.cat([z, c[0], h[0]] if cfg.controller.use_cell else [z, h[0]], dim=-1)
        a = C.act(self.rows_params[rows], x, self.out_dim, cfg.controller.bias)
        vec = adapter.controller_to_vector(a)
        actions = [adapter.vector_to_action(v) for v in vec.numpy()]
        for j, i in enumerate(rows):
            if self.explore > 0:
                hold = cfg.collect
                if self.exploring[i] == 0 and self.explore_rngs[i].random() < self.explore:
                    self.exploring[i] = int(
                        self.explore_rngs[i].integers(hold.hold_min, hold.hold_max + 1)
                    )
                if self.exploring[i] > 0:
                    self.exploring[i] -= 1
                    actions[j] = self.random[i](obs[j])
                    vec[j] = torch.as_tensor(adapter.encode_action(actions[j]), dtype=torch.float32)
        h, c = self.m.mdnrnn.advance(z, vec, (h, c))
        self.h[:, rows], self.c[:, rows] = h, c
        return actions


class Agent:
    """One env's agent: `reset(seed)` at the start of an episode, then `agent(obs) -> env action`. The
    batched agent with one env, so both play the same episodes."""

    def __init__(self, models: Models, params: np.ndarray, explore: float = 0.0) -> None:
        self.batch = BatchedAgent(models, params, explore)

    def reset(self, seed: int) -> None:
        self.batch.reset([seed])

    def __call__(self, obs: np.ndarray) -> Any:
        return self.batch.act(obs[None], [0])[0]
