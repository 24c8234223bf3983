"""The public Python API: one agent's V, M and C, its real env, its policy and its dream, numpy in and out.

```python
import worldmodels as wm

agent = wm.load("doom")                   # a shipped agent, an exported folder, or a run directory
z = agent.vision.encode(frames)           # (N, 64, 64, 3) uint8 -> (N, Z)
pictures = agent.vision.decode(z)         # (N, Z) -> (N, 64, 64, 3) uint8
state = agent.memory.initial_state(len(z))
prediction, state = agent.memory.step(z, actions, state)   # next z's mixture, done, reward
action = agent.controller.act(agent.controller.features(z, state))
```

Everything the CLI does for one agent goes through these objects; the classes underneath (models/, dream.py,
agent.py) stay internal and may change. Shapes: N batch, Z latent size, H M's units, K mixture components,
A M's action size, O C's outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldmodels.config import Config, load_config, round_config
from worldmodels.envs import FRAME, Adapter, adapter_for, adapter_of
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNN, ConvVAE
from worldmodels.models import controller as linear
from worldmodels.models.mdnrnn import sample_mixture
from worldmodels.models.vae import frames_to_tensor
from worldmodels.rundir import RunDir
from worldmodels.utils import autocast

if TYPE_CHECKING:
    import gymnasium as gym

    from worldmodels.dream import Dream, DreamEnv, DreamVectorEnv

__all__ = [
    "Controller",
    "Memory",
    "MemoryState",
    "Policy",
    "Prediction",
    "Vision",
    "WorldModel",
    "load",
]


def load(source: str | Path = "doom", device: str = "cpu") -> WorldModel:
    """Load an agent by one name: a shipped agent (`"doom"`, `"carracing"`), a folder written by
    `worldmodels export`, or a run directory (its final V, M and C, as `worldmodels evaluate` plays them).
    `device`: where V and M run (`cpu`, `cuda`, `cuda:N`, `mps`)."""
    from worldmodels.pretrained import pretrained_dir, shipped_names

    if str(source) in shipped_names():
        return WorldModel(pretrained_dir(str(source)), device)
    path = Path(source)
    if not RunDir(path).config.is_file():
        shipped = shipped_names()
        raise WorldModelsError(
            f"load({str(source)!r}): neither a shipped agent ({', '.join(shipped)}) nor a folder holding "
            "a config.json (a run directory, or an agent written by `worldmodels export`)"
        )
    return WorldModel(path, device)


# ------------------------------------------------------------------------------------------------ V


class Vision:
    """V: frames to latents and back. Frames are uint8 (N, 64, 64, 3) or one (64, 64, 3); latents float32
    (N, Z) or one (Z,): a single frame in gives a single z out."""

    def __init__(self, vae: ConvVAE, amp: bool, device: torch.device) -> None:
        self.model, self.amp, self.device = vae.eval(), amp, device
        self.z_dim: int = vae.z_dim

    @torch.no_grad()
    def encode_distribution(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V's posterior per frame: (mu, logvar), each (N, Z) (or (Z,) for one frame). In bf16 where V was
        trained so (`vae.amp`), as the run's `encode` stage made M's training data."""
        batch, single = _frames(frames, "Vision.encode")
        x = frames_to_tensor(torch.from_numpy(batch)).to(self.device)
        with autocast(self.device, self.amp):
            mu, logvar = self.model.encode(x)
        mu, logvar = mu.float().cpu().numpy(), logvar.float().cpu().numpy()
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def encode(
        self, frames: np.ndarray, sample: bool = False, seed: int | None = None
    ) -> np.ndarray:
        """Frames -> z: V's mean (default), or a sample from its posterior (`sample=True`, the z M was
        trained on; `seed` makes it repeatable)."""
        mu, logvar = self.encode_distribution(frames)
        if not sample:
            return mu
        eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(np.float32)
        return mu + np.exp(0.5 * logvar) * eps

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (N, Z) or (Z,) -> V's picture of it, uint8 (N, 64, 64, 3) or (64, 64, 3)."""
        batch, single = _vectors(z, self.z_dim, "Vision.decode", "z")
        img = self.model.decode(torch.from_numpy(batch).to(self.device)).float()
        out = img.permute(0, 2, 3, 1).clamp(0, 1).mul(255).round().byte().cpu().numpy()
        return out[0] if single else out


# ------------------------------------------------------------------------------------------------ M


@dataclass(frozen=True)
class MemoryState:
    """M's memory after some steps: the LSTM's h and c, each (N, H)."""

    h: np.ndarray
    c: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """What M predicts for the next step of each of N rollouts."""

    logpi: np.ndarray
    """Log mixture weights, (N, Z, K) (or (N, 1, K) for a joint mixture)."""
    mu: np.ndarray
    """Component means, (N, Z, K)."""
    logsigma: np.ndarray
    """Component log standard deviations, (N, Z, K)."""
    done: np.ndarray | None
    """Probability that this step ends the episode, (N,) (None: M has no done head)."""
    reward: np.ndarray | None
    """Predicted reward of this step, (N,) (None: M has no reward head)."""


class Memory:
    """M: the MDN-RNN. `step` feeds it z and the action taken (as M's action vector, see
    `WorldModel.action_vector`) and returns its prediction of the next z with the new memory."""

    def __init__(self, mdnrnn: MDNRNN, device: torch.device) -> None:
        self.model, self.device = mdnrnn.eval(), device
        self.z_dim: int = mdnrnn.z_dim
        self.hidden: int = mdnrnn.hidden
        self.action_dim: int = mdnrnn.action_dim

    def initial_state(self, batch: int = 1) -> MemoryState:
        """The memory at an episode's first frame: zeros."""
        zeros = np.zeros((batch, self.hidden), np.float32)
        return MemoryState(zeros, zeros.copy())

    @torch.no_grad()
    def step(
        self, z: np.ndarray, action: np.ndarray, state: MemoryState
    ) -> tuple[Prediction, MemoryState]:
        """z (N, Z) and action vectors (N, A) -> M's prediction of z_{t+1} (and done, reward), new state."""
        z, _ = _vectors(z, self.z_dim, "Memory.step", "z")
        action, _ = _vectors(action, self.action_dim, "Memory.step", "action")
        if not (len(z) == len(action) == len(state.h)):
            raise WorldModelsError(
                f"Memory.step: {len(z)} z, {len(action)} actions and {len(state.h)} states; "
                "give one of each per rollout"
            )
        t = lambda x: torch.as_tensor(np.asarray(x, np.float32), device=self.device)  # noqa: E731
        out, (h, c) = self.model.step(t(z), t(action), (t(state.h)[None], t(state.c)[None]))
        n = lambda x: None if x is None else x[:, 0].float().cpu().numpy()  # noqa: E731
        done = None if out.done_logit is None else 1 / (1 + np.exp(-n(out.done_logit)))
        pred = Prediction(n(out.logpi), n(out.mu), n(out.logsigma), done, n(out.reward))
        return pred, MemoryState(h[0].cpu().numpy(), c[0].cpu().numpy())

    def sample(
        self, prediction: Prediction, temperature: float = 1.0, seed: int | None = None
    ) -> np.ndarray:
        """Draw z_{t+1} (N, Z) from a prediction at temperature tau, as the dream does (the mixture's
        logits divided by tau, its noise scaled by sqrt(tau))."""
        if temperature <= 0:
            raise WorldModelsError(f"Memory.sample: temperature {temperature} must be > 0")
        gen = torch.Generator().manual_seed(
            seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        )
        z = sample_mixture(*(torch.from_numpy(x) for x in (prediction.logpi, prediction.mu,
                                                          prediction.logsigma)), temperature, gen)  # fmt: skip
        return z.numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------ C


class Controller:
    """C: a = tanh(W [z, (c), h] + b), outputs in [-1, 1] (see `WorldModel.action_vector` for what the
    env receives). `params` is the flat vector CMA-ES trained; for a committee (`iterate.final_vote`),
    its `members` Cs' vectors end to end, the action then the median of theirs, output by output."""

    def __init__(self, params: np.ndarray, z_dim: int, hidden: int, out_dim: int, use_cell: bool,
                 bias: bool) -> None:  # fmt: skip
        self.params = np.asarray(params, np.float32)
        self.use_cell, self.bias, self.out_dim = use_cell, bias, out_dim
        self.in_dim: int = z_dim + hidden * (2 if use_cell else 1)
        self.members: int = linear.committee_size(self.params.size, self.in_dim, out_dim, bias)
        if self.members == 0:
            raise WorldModelsError(
                f"Controller: {self.params.size} parameters do not make Cs of "
                f"{linear.n_params(self.in_dim, out_dim, bias)}"
            )

    def features(self, z: np.ndarray, state: MemoryState) -> np.ndarray:
        """C's input, [z, c, h] (use_cell, the paper's Doom C) or [z, h] (CarRacing): (N, in)."""
        z = np.atleast_2d(np.asarray(z, np.float32))
        parts = [z, state.c, state.h] if self.use_cell else [z, state.h]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def act(self, features: np.ndarray) -> np.ndarray:
        """C's input (N, in) or (in,) -> its outputs (N, O) or (O,) in [-1, 1]."""
        x, single = _vectors(features, self.in_dim, "Controller.act", "features")
        p = torch.from_numpy(self.params).expand(len(x), -1)
        out = linear.act(p, torch.from_numpy(x), self.out_dim, self.bias).numpy()
        return out[0] if single else out


# ------------------------------------------------------------------------------------------- policy


class Policy:
    """The agent in the real env, one env or a batch, as `worldmodels evaluate` plays it: `reset(seed)`
    at the start of an episode (one seed per env of a batch), then `act(frame)` -> the env's action (a list
    of actions for a batch of frames). The frames are the agent's env's observations (64x64x3 uint8;
    `WorldModel.make_env`). `controller`: any function from C's input (N, in) to outputs (N, O) in [-1, 1]
    instead of C's weights (your own policy on this V and M)."""

    def __init__(
        self, world: WorldModel, controller: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self.world, self.controller = world, controller
        self._agent: Any = None
        self.seeds: list[int] = []

    def reset(self, seed: int | Sequence[int]) -> None:
        """Start new episodes: one seed (one env), or one per env of a batch. Each episode's sampling of
        z comes from its seed, so the same seed plays the same episode."""
        from worldmodels.agent import BatchedAgent

        seeds = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]  # type: ignore[arg-type]
        if not seeds:
            raise WorldModelsError("Policy.reset: give at least one seed")
        self._agent = BatchedAgent(self.world._models, len(seeds), controller=self._own())
        for i, s in enumerate(seeds):
            self._agent.start(i, s, self.world.controller.params)
        self.seeds = seeds

    def act(self, obs: np.ndarray, envs: Sequence[int] | None = None) -> Any:
        """One frame (64, 64, 3) -> one env action; a batch (N, 64, 64, 3) -> a list of N actions, one per
        env that `reset` started (or per env named in `envs`, the indices of those still playing)."""
        if self._agent is None:
            raise WorldModelsError("Policy.act: call reset(seed) first (it starts the episode)")
        batch, single = _frames(obs, "Policy.act")
        rows = list(range(len(self.seeds))) if envs is None else [int(i) for i in envs]
        if len(batch) != len(rows) or not all(0 <= i < len(self.seeds) for i in rows):
            raise WorldModelsError(
                f"Policy.act: {len(batch)} frame(s) for envs {rows}; reset was given "
                f"{len(self.seeds)} seed(s)"
            )
        actions = self._agent.act(batch, rows)
        return actions[0] if single else actions

    def __call__(self, obs: np.ndarray) -> Any:
        return self.act(obs)

    def _own(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The given controller as the batched agent calls it (torch in and out), its outputs checked."""
        if self.controller is None:
            return None
        fn, out_dim = self.controller, self.world.controller.out_dim

        def outputs(x: torch.Tensor) -> torch.Tensor:
            out = np.asarray(fn(x.numpy()), np.float32)
            if out.shape != (len(x), out_dim):
                raise WorldModelsError(
                    f"Policy: the controller returned shape {out.shape}, expected ({len(x)}, {out_dim})"
                )
            return torch.from_numpy(np.clip(out, -1.0, 1.0))

        return outputs


# -------------------------------------------------------------------------------------------- agent


class WorldModel:
    """One agent: its config, V (`vision`), M (`memory`), C (`controller`), the env it was trained on
    (`make_env`), the agent as a policy (`policy`), and M's dream as a Gymnasium env (`dream`). With an
    ensemble M (`mdnrnn.members`), `memory` is member 0, whose memory the agent reads in the real env, and
    the dream steps every member as C's training dream did."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        from worldmodels.agent import load_controller, load_models
        from worldmodels.utils import resolve_device

        self.folder = Path(folder)
        self.device = resolve_device(device)
        run = RunDir(self.folder)
        self.config: Config = load_config(run.config)
        agent = run.agent_round(self.config)  # its M and C, and the tau its C trained at
        self._agent_config = round_config(self.config, agent.index)
        m_path, c_path = agent.mdnrnn, agent.controller
        self._m_path = m_path
        self._models = load_models(self.folder, self.config, "cpu", mdnrnn=m_path)
        cfg, m = self.config, self._models.mdnrnn
        # an ensemble M (mdnrnn.members): the agent reads member 0's memory, the dream samples the members
        primary = m if isinstance(m, MDNRNN) else m.primary
        self.vision = Vision(_to(self._models.vae, self.device), cfg.vae.amp, self.device)
        self.memory = Memory(_to(primary, self.device), self.device)
        self.controller = Controller(
            load_controller(c_path, cfg), cfg.vae.z_dim, cfg.mdnrnn.hidden,
            self.adapter.controller_outputs, cfg.controller.use_cell, cfg.controller.bias,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"WorldModel({str(self.folder)!r}, env={self.env_id!r})"

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the env the agent was trained on."""
        return self.config.env.id

    @property
    def adapter(self) -> Adapter:
        return adapter_of(self.config)

    @property
    def temperature(self) -> float:
        """The dream temperature tau the agent's C was trained at."""
        return self._agent_config.controller.temperature

    def make_env(self, max_steps: int | None = None, env_id: str | None = None) -> gym.Env:
        """The real env as the agent sees it: 64x64x3 uint8 frames, the run's step limit (or `max_steps`)
        as truncation, the part of the screen the agent was trained on (env.frame). `env_id`: another id of the
        same game (e.g. gymnasium's own `CarRacing-v3`)."""
        env = self.config.env
        return adapter_for(env_id or env.id).make(max_steps or env.max_steps, env.frame)

    def action_vector(self, outputs: np.ndarray) -> np.ndarray:
        """C's outputs (N, O) in [-1, 1] -> the action vectors M reads (N, A): the env's (Doom: -1, 0,
        +1), or C's outputs themselves for an M trained with `mdnrnn.action_input controller`."""
        x = torch.as_tensor(np.atleast_2d(np.asarray(outputs, np.float32)))
        return self.adapter.m_action(x, self.config.mdnrnn.action_input).numpy()

    def env_action(self, vector: np.ndarray) -> Any:
        """One action vector (A,) -> the env's action."""
        return self.adapter.vector_to_action(np.asarray(vector, np.float32))

    def policy(self, controller: Callable[[np.ndarray], np.ndarray] | None = None) -> Policy:
        """The agent as a policy in the real env (see `Policy`); `controller` replaces C."""
        return Policy(self, controller)

    @cached_property
    def _dream(self) -> Dream:
        from worldmodels.dream import build_dream

        return build_dream(self.folder, self._agent_config, self.device, mdnrnn=self._m_path)

    def dream(self, temperature: float | None = None, observation: str = "features",
              render_mode: str | None = None, max_steps: int | None = None,
              dropout: float | None = None) -> DreamEnv:  # fmt: skip
        """M's dream as a Gymnasium env, scored as C's training dream is (see `worldmodels.dream`).
        `temperature`: tau (default: the agent's); `observation`: `features` ([z, (c), h], C's input) or
        `pixels` (V's decoding of z, 64x64x3 uint8); `dropout`: each rollout's dropout rate of M's input
        and fed-back h, one mask per rollout (default: the agent's `controller.dream_dropout`)."""
        from worldmodels.dream import DreamEnv

        return DreamEnv(self._dream_at(temperature, max_steps, dropout), self._models.vae,
                        render_mode, observation)  # fmt: skip

    def dream_vector(self, num_envs: int, temperature: float | None = None,
                     observation: str = "features", max_steps: int | None = None,
                     dropout: float | None = None) -> DreamVectorEnv:  # fmt: skip
        """`num_envs` dreams stepped as one batch (a `gymnasium.vector.VectorEnv`)."""
        from worldmodels.dream import DreamVectorEnv

        return DreamVectorEnv(self._dream_at(temperature, max_steps, dropout), num_envs,
                              self._models.vae, observation)  # fmt: skip

    def _dream_at(
        self, temperature: float | None, max_steps: int | None, dropout: float | None = None
    ) -> Dream:
        from dataclasses import replace

        base = self._dream
        spec = replace(
            base.spec,
            temperature=base.spec.temperature if temperature is None else float(temperature),
            max_steps=base.spec.max_steps if max_steps is None else int(max_steps),
            dropout=base.spec.dropout if dropout is None else float(dropout),
        )
        if spec.temperature <= 0 or spec.max_steps < 1 or not 0 <= spec.dropout < 1:
            raise WorldModelsError(
                "dream: temperature must be > 0, max_steps >= 1 and dropout in [0, 1)"
            )
        return base.with_spec(spec)


# ------------------------------------------------------------------------------------------ helpers


def _to(model: torch.nn.Module, device: torch.device) -> Any:
    """The model on `device`: itself on the CPU, else a copy (the real-env agent keeps the CPU one)."""
    import copy

    return model if device.type == "cpu" else copy.deepcopy(model).to(device)


def _frames(frames: Any, who: str) -> tuple[np.ndarray, bool]:
    """(N, 64, 64, 3) uint8 frames, and whether one frame (64, 64, 3) was given; else a one-line error."""
    x = np.asarray(frames)
    want = (FRAME, FRAME, 3)
    if x.ndim == 3 and x.shape == want or x.ndim == 4 and x.shape[1:] == want:
        if x.dtype != np.uint8:
            raise WorldModelsError(f"{who}: expected uint8 frames, got {x.dtype}")
        return (x[None] if x.ndim == 3 else x), x.ndim == 3
    raise WorldModelsError(
        f"{who}: expected a {FRAME}x{FRAME}x3 uint8 frame (or a batch (N, {FRAME}, {FRAME}, 3)) as the "
        f"agent's env gives (WorldModel.make_env), got shape {x.shape}; a raw frame goes through "
        "worldmodels.envs.preprocess first"
    )


def _vectors(x: Any, size: int, who: str, what: str) -> tuple[np.ndarray, bool]:
    """(N, size) float32, and whether one vector (size,) was given; else a one-line error."""
    a = np.asarray(x, np.float32)
    if a.ndim == 1 and a.shape[0] == size or a.ndim == 2 and a.shape[1] == size:
        return (a[None] if a.ndim == 1 else np.ascontiguousarray(a)), a.ndim == 1
    raise WorldModelsError(
        f"{who}: expected {what} of shape (N, {size}) or ({size},), got {a.shape}"
    )


# ------------------------------------------------------------------------ the dream's Gymnasium ids


@functools.lru_cache(maxsize=4)
def _cached(source: str, device: str) -> WorldModel:
    return load(source, device)


def _agent(agent: str | Path | WorldModel, device: str) -> WorldModel:
    return agent if isinstance(agent, WorldModel) else _cached(str(agent), device)


def dream_env(
    agent: str | Path | WorldModel = "doom",
    temperature: float | None = None,
    observation: str = "features",
    render_mode: str | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
    dropout: float | None = None,
) -> DreamEnv:
    """Entry point of the ids `worldmodels/Dream-v0` (any agent), `worldmodels/DoomDream-v0` and
    `worldmodels/CarRacingDream-v0` (the shipped agents): `gymnasium.make(id, agent=..., temperature=...,
    observation="features" | "pixels", render_mode="rgb_array", dropout=...)`. An agent loaded once per
    process."""
    return _agent(agent, device).dream(temperature, observation, render_mode, max_steps, dropout)


def dream_vector_env(
    num_envs: int = 1,
    agent: str | Path | WorldModel = "doom",
    temperature: float | None = None,
    observation: str = "features",
    max_steps: int | None = None,
    device: str = "cpu",
    render_mode: str | None = None,
    dropout: float | None = None,
) -> DreamVectorEnv:
    """Vector entry point of the same ids: `gymnasium.make_vec(id, num_envs=N,
    vectorization_mode="vector_entry_point")` steps N dreams as one batch."""
    if render_mode is not None:
        raise WorldModelsError("the dream's vector env does not render; use observation='pixels'")
    return _agent(agent, device).dream_vector(
        num_envs, temperature, observation, max_steps, dropout
    )
