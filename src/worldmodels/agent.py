"""The agent in the real env: V encodes the frame, C acts on [z, (c), h], M updates its memory.

One code path for evaluation, real-env fitness, iterative training's collection and rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.config import Config, load_config
from worldmodels.envs import Adapter, adapter_for, adapter_of
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNN, ConvVAE, controller_dims
from worldmodels.models import controller as linear
from worldmodels.models.vae import frames_to_tensor
from worldmodels.rundir import RunDir
from worldmodels.utils import autocast, load_checkpoint, rng_for


@dataclass
class AgentModels:
    """V and M of a run (C's parameters come apart: one V and M serve many Cs), with the run's config and
    its env's adapter: what the real-env agent and the workers build once."""

    cfg: Config
    vae: ConvVAE
    mdnrnn: MDNRNN
    adapter: Adapter


def load_models(
    run_dir: Path, cfg: Config | None = None, device: str = "cpu", mdnrnn: Path | None = None
) -> AgentModels:
    """V, M and the adapter of a run; M is the run's agent's (RunDir.agent) unless given."""
    from worldmodels.models.checkpoints import load_mdnrnn, load_vae

    run_dir = Path(run_dir)
    cfg = cfg or load_config(RunDir(run_dir).config)
    return AgentModels(
        cfg,
        load_vae(RunDir(run_dir).vae, cfg, device),
        load_mdnrnn(Path(mdnrnn) if mdnrnn else RunDir(run_dir).agent(cfg)[0], cfg, device),
        adapter_of(cfg),
    )


def save_controller(path: Path, params: np.ndarray, header: dict[str, Any]) -> None:
    """C's parameters (P,), or a committee's (K, P) (`models.controller`), with the header's notes."""
    from worldmodels.utils import save_checkpoint

    save_checkpoint(path, {"kind": "controller", **header}, {"params": torch.as_tensor(params)})


def load_controller(path: Path, cfg: Config) -> np.ndarray:
    header, blob = load_checkpoint(path, "controller")
    params = blob["params"].numpy().astype(np.float32).reshape(-1)  # a committee: (K, P) end to end
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    want = linear.n_params(in_dim, out_dim, cfg.controller.bias)
    k = linear.committee_size(params.size, in_dim, out_dim, cfg.controller.bias)
    if k % 2 == 0:
        raise WorldModelsError(
            f"{path}: controller has {params.size} parameters, this run's C needs {want}"
            + (f" (or an odd number of C's: a committee of {k} has no middle)" if k else "")
        )
    if not header.get("finished"):
        raise WorldModelsError(
            f"{path}: C's training has not finished; rerun `worldmodels train-controller`"
        )
    return params


def members(params: np.ndarray, cfg: Config) -> np.ndarray:
    """A controller's flat parameters as (K, P): one row per member of a committee (K = 1: one C)."""
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    return np.asarray(params).reshape(-1, linear.n_params(in_dim, out_dim, cfg.controller.bias))


V_MIN_BATCH = 4
"""V encodes at least this many frames at once (the last frame repeated). In fp32, oneDNN computes a
frame's convolutions the same way in every batch of 4 or more frames, but not in batches of 1 to 3
(measured on this project's CPUs: batch 1 differs from batch 16 by about 1e-8, batches 4..64 agree bit for
bit); in bf16 every batch size agreed. Padding makes an env's z the same whether 1 or 16 envs are alive,
so a batched agent plays exactly the episodes one env at a time would."""


class BatchedAgent:
    """C acting in N real envs ("slots") at once: V encodes the frames of every live slot in one batch (in
    bf16 where V was trained and the latents encoded in bf16, `vae.amp`, so C and M see the z they were
    trained on), each slot's z is sampled from V's posterior with its episode's own random stream, C acts per
    slot (each slot with its own parameters), and M advances every slot's memory in one batch. A slot whose
    episode ended is started again with the next episode, so the batch stays full.

    `explore` (iterative training's data collection): the per-step chance of handing a slot over to the
    random policy for hold_min..hold_max frames; M still sees the action taken.
    """

    def __init__(
        self,
        models: AgentModels,
        slots: int,
        explore: float = 0.0,
        controller: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """`controller`: a function from C's inputs (k, in) to outputs (k, O) in [-1, 1] that acts instead
        of the linear C (its parameters are then unused)."""
        self.m, self.explore, self.controller = models, explore, controller
        self.out_dim = models.adapter.controller_outputs
        in_dim, _ = controller_dims(models.cfg, self.out_dim)
        size = linear.n_params(in_dim, self.out_dim, models.cfg.controller.bias)
        self.params = torch.zeros(slots, size)
        self.h, self.c = models.mdnrnn.initial_state(slots)
        self.rngs: list[np.random.Generator | None] = [None] * slots
        self.explore_rngs: list[np.random.Generator | None] = [None] * slots
        self.exploring = [0] * slots
        self.random: list[Any] = [None] * slots

    def start(self, slot: int, seed: int, params: np.ndarray) -> None:
        """Begin an episode in `slot`: C's parameters (a committee's: `models.controller`), and every random
        stream from the episode's seed. The slots of one batch hold controllers of one size."""
        p = torch.from_numpy(np.array(params, np.float32).reshape(-1))
        if p.numel() != self.params.shape[1]:  # a committee: every slot's row takes its size
            if any(r is not None for j, r in enumerate(self.rngs) if j != slot):
                raise WorldModelsError(
                    f"BatchedAgent.start: slot {slot} gets a controller of {p.numel()} parameters, "
                    f"the batch's other slots hold {self.params.shape[1]}; one batch plays one size"
                )
            self.params = torch.zeros(len(self.params), p.numel())
        self.params[slot] = p
        self.h[:, slot], self.c[:, slot] = 0.0, 0.0
        self.rngs[slot] = rng_for(seed, 1)
        self.explore_rngs[slot], self.exploring[slot] = rng_for(seed, 3), 0
        if self.explore > 0:
            self.random[slot] = self.m.adapter.random_policy(self.m.cfg.collect)
            self.random[slot].reset(rng_for(seed, 4))

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, rows: list[int], outputs: torch.Tensor | None = None
    ) -> list[Any]:
        """Frames (k, 64, 64, 3) of the slots `rows` -> their env actions. `outputs` (k, C's outputs), when
        given, stands in for C's (a person driving, `worldmodels play`). The step's z and the action vectors
        M read (`mdnrnn.action_input`) are kept in `last_z` and `last_vec`."""
        cfg, adapter, k = self.m.cfg, self.m.adapter, len(rows)
        frames = torch.from_numpy(np.ascontiguousarray(obs))
        if k < V_MIN_BATCH:
            frames = torch.cat([frames, frames[-1:].expand(V_MIN_BATCH - k, -1, -1, -1)])
        with autocast(torch.device("cpu"), cfg.vae.amp):  # as `encode` made M's training data
            mu, logvar = self.m.vae.encode(frames_to_tensor(frames))
        mu, logvar = mu[:k].float(), logvar[:k].float()
        eps = np.stack([self.rngs[i].standard_normal(mu.shape[1]) for i in rows]).astype(np.float32)
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
        h, c = self.h[:, rows], self.c[:, rows]
        x = torch.cat([z, c[0], h[0]] if cfg.controller.use_cell else [z, h[0]], dim=-1)
        if outputs is not None:
            a = outputs
        elif self.controller is not None:
            a = self.controller(x)
        else:
            a = linear.act(self.params[rows], x, self.out_dim, cfg.controller.bias)
        vec = adapter.controller_to_vector(a)
        actions = [adapter.vector_to_action(v) for v in vec.numpy()]
        m_vec = adapter.m_action(a, cfg.mdnrnn.action_input)  # what M reads (mdnrnn.action_input)
        if self.explore > 0:
            hold = cfg.collect
            for j, i in enumerate(rows):
                rng = self.explore_rngs[i]
                if self.exploring[i] == 0 and rng.random() < self.explore:
                    self.exploring[i] = int(rng.integers(hold.hold_min, hold.hold_max + 1))
                if self.exploring[i] > 0:
                    self.exploring[i] -= 1
                    actions[j] = self.random[i](obs[j])
                    m_vec[j] = torch.as_tensor(
                        adapter.encode_action(actions[j]), dtype=torch.float32
                    )
        h, c = self.m.mdnrnn.advance(z, m_vec, (h, c))
        self.h[:, rows], self.c[:, rows] = h, c
        self.last_z, self.last_vec = z, m_vec
        return actions


class Agent:
    """One env's agent: `reset(seed)` at the start of an episode, then `agent(obs) -> env action`. The
    batched agent with one env, so both play the same episodes."""

    def __init__(self, models: AgentModels, params: np.ndarray, explore: float = 0.0) -> None:
        self.batch, self.params = BatchedAgent(models, 1, explore), params

    def reset(self, seed: int) -> None:
        self.batch.start(0, seed, self.params)

    def __call__(self, obs: np.ndarray) -> Any:
        return self.batch.act(obs[None], [0])[0]
