"""The dream: M as an environment. A whole CMA-ES generation (population x trials rollouts) advances as one
tensor batch; each rollout owns a random stream seeded by its own seed, so a batch of rollouts gives the
same trajectories as running them one at a time. The same dream as Gymnasium envs: `DreamEnv` (one
rollout) and `DreamVectorEnv` (a batch), both on `DreamSlots`. `build_dream` makes a run's dream (its M,
its start frames, or start states at any step of its episodes).

Per step: C sees [z, (c), h]; its action is mapped to M's action vector; M steps; z_{t+1} is sampled at
temperature tau; done = sigmoid(done_logit) > 0.5 (or sampled; optionally with the done loss's weight
undone first); reward is +1 per step survived (envs whose reward is an alive bonus, like Doom) or M's
reward head.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmodels.config import Config
from worldmodels.data.starts import dream_starts
from worldmodels.data.storage import episode_index, episode_length, list_episodes, load_npz
from worldmodels.envs import FRAME, Adapter, adapter_for, adapter_of
from worldmodels.errors import WorldModelsError
from worldmodels.models import controller as linear
from worldmodels.models.checkpoints import load_mdnrnn, load_vae
from worldmodels.models.mdnrnn import (
    MDNRNN,
    DropoutMasks,
    MDNOutput,
    MDNRNNEnsemble,
    dropout_masks,
    sample_mixture_from,
)
from worldmodels.models.vae import ConvVAE, sample_z
from worldmodels.rundir import RunDir
from worldmodels.utils import STREAM_DREAM_STARTS, resolve_device, rng_for, seed_for

CHUNK = 32  # steps of random numbers drawn at a time per rollout
MEMBER_KEY = 1  # the second random stream of a rollout's seed: which ensemble member it follows
DROPOUT_KEY = 2  # the third: its dropout masks (controller.dream_dropout)


@dataclass
class DreamSpec:
    temperature: float
    max_steps: int
    use_cell: bool
    bias: bool
    sample_done: bool = False
    reproject_z: bool = False
    """Each sampled z goes through V (decode, then the encoder's mean); the Dream needs V for it."""
    done_logit_offset: float = 0.0
    """Subtracted from M's done logit before the threshold or the sampling (ln w undoes a positive weight
    w in the done loss)."""
    alive_reward: bool = True
    """+1 per step survived; otherwise the reward head's prediction."""
    member_choice: str = "random"
    """Ensemble M: follow a member drawn per step and rollout (`random`), one drawn per rollout and kept
    for all its steps (`rollout`), or member 0 (`first`)."""
    disagreement_penalty: float = 0.0
    """Ensemble M: subtracted from each step's reward, times the members' disagreement."""
    dropout: float = 0.0
    """Each rollout's dropout rate of M's input and fed-back h, one mask per rollout (0: the whole M)."""
    action_input: str = "env"
    """What M reads as C's action: the env's action vector (`env`) or C's output (`controller`)."""

    @classmethod
    def of(
        cls,
        cfg: Config,
        alive_reward: bool,
        temperature: float | None = None,
        max_steps: int | None = None,
    ) -> DreamSpec:
        """The dream a run's C trains in (its controller settings), at another temperature or step limit
        where given."""
        c = cfg.controller
        return cls(
            temperature=c.temperature if temperature is None else temperature,
            max_steps=c.max_steps if max_steps is None else max_steps,
            use_cell=c.use_cell,
            bias=c.bias,
            sample_done=c.sample_done,
            reproject_z=c.reproject_z,
            done_logit_offset=math.log(cfg.mdnrnn.done_pos_weight) if c.calibrate_done else 0.0,
            alive_reward=alive_reward,
            member_choice=c.member_choice,
            disagreement_penalty=c.disagreement_penalty,
            dropout=cfg.mdnrnn.dropout if c.dream_dropout < 0 else c.dream_dropout,
            action_input=cfg.mdnrnn.action_input,
        )


def _start_draw(g: torch.Generator, n_starts: int, z_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A rollout's first draws from its stream: which real start it takes, and its initial z's noise."""
    return torch.randint(n_starts, (1,), generator=g)[0], torch.randn(z_dim, generator=g)


def _split_row(row: torch.Tensor, z_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's uniforms (N, 2Z + 1) -> u (mixture choice), eps ~ N(0, 1) (its noise), u for done."""
    u = row[:, z_dim : 2 * z_dim].clamp(1e-7, 1 - 1e-7)
    return row[:, :z_dim], torch.erfinv(2 * u - 1) * (2**0.5), row[:, 2 * z_dim]


def rollout_masks(
    m: MDNRNN | MDNRNNEnsemble, seeds: list[int], rate: float, device: torch.device
) -> DropoutMasks | None:
    """Each rollout's dropout masks (rows in the order of `seeds`), drawn from a stream of its own seed:
    the same rollout gets the same masks in a batch, alone, or in a dream env. None at rate 0."""
    if rate <= 0:
        return None
    rows = [
        dropout_masks(1, m.z_dim, m.action_dim, m.hidden, rate,
                      torch.Generator().manual_seed(seed_for(int(s), DROPOUT_KEY)))
        for s in seeds
    ]  # fmt: skip
    return DropoutMasks(
        torch.cat([r.input for r in rows]).to(device),
        torch.cat([r.hidden for r in rows]).to(device),
    )


def _member_numbers(g: torch.Generator, keep: bool) -> torch.Tensor:
    """CHUNK steps of a rollout's member numbers from its member stream; `keep` (`member_choice rollout`):
    the first number for every step, so the rollout follows one member throughout."""
    u = torch.rand(CHUNK, generator=g)
    return u[:1].expand(CHUNK) if keep else u


class _RolloutNoise:
    """Per-rollout random numbers, CHUNK steps at a time: u and eps for z (Z each), u for done (1). With an
    ensemble M, u for the member comes from a second stream of the rollout's seed, so the first stream
    (and a one-member ensemble's dream) is the same as a single M's. `keep_member`: every step gets that
    stream's first number, so a rollout follows one member throughout (`member_choice rollout`)."""

    def __init__(
        self,
        seeds: list[int],
        z_dim: int,
        device: torch.device,
        member: bool = False,
        keep_member: bool = False,
    ) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.member_gens = (
            [torch.Generator().manual_seed(seed_for(int(s), MEMBER_KEY)) for s in seeds]
            if member
            else None
        )
        self.z_dim, self.device = z_dim, device
        self.keep_member = keep_member
        self.members: torch.Tensor | None = None
        self.t = CHUNK

    def start(self, n_starts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which real first frame each rollout starts from, and the noise of its initial z."""
        idx, eps = zip(*(_start_draw(g, n_starts, self.z_dim) for g in self.gens))
        return torch.stack(idx).to(self.device), torch.stack(eps).to(self.device)

    def next(
        self, alive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self.t == CHUNK:
            width = 2 * self.z_dim + 1
            self.buf = torch.stack([torch.rand(CHUNK, width, generator=g) for g in self.gens]).to(
                self.device
            )
            if self.member_gens is not None and (self.members is None or not self.keep_member):
                self.members = torch.stack(
                    [_member_numbers(g, self.keep_member) for g in self.member_gens]
                ).to(self.device)
            self.t = 0
        row = self.buf[alive, self.t]
        u_member = None if self.members is None else self.members[alive, self.t]
        self.t += 1
        return (*_split_row(row, self.z_dim), u_member)


class Dream:
    """M as a batched environment over real start frames (their (mu, logvar) under V)."""

    def __init__(
        self,
        mdnrnn: MDNRNN | MDNRNNEnsemble,
        adapter: Adapter,
        start_mu: np.ndarray,
        start_logvar: np.ndarray,
        spec: DreamSpec,
        device: torch.device | str = "cpu",
        vae: ConvVAE | None = None,
        start_state: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """start_mu, start_logvar (N, Z): the real frames rollouts start from; start_state: M's (h, c)
        there, (N, H) each (None: zero, a first frame's)."""
        if not spec.alive_reward and not mdnrnn.reward_head:
            raise WorldModelsError(
                f"the dream of {adapter.env_id} needs a reward: set --mdnrnn.reward_head true and retrain M"
            )
        if spec.reproject_z and vae is None:
            raise WorldModelsError(
                "controller.reproject_z needs V: build the dream with the run's V"
            )
        self.vae = vae.eval() if vae is not None and spec.reproject_z else None
        self.m, self.adapter, self.spec = mdnrnn.eval(), adapter, spec
        self.device = torch.device(device)
        self.start_mu = torch.as_tensor(start_mu, dtype=torch.float32, device=self.device)
        self.start_std = (
            torch.as_tensor(start_logvar, dtype=torch.float32, device=self.device).mul(0.5).exp()
        )
        self.start_state = (
            None
            if start_state is None
            else tuple(
                torch.as_tensor(x, dtype=torch.float32, device=self.device) for x in start_state
            )
        )
        self.z_dim = mdnrnn.z_dim
        self.out_dim = adapter.controller_outputs
        self.ensemble = isinstance(mdnrnn, MDNRNNEnsemble)
        if self.start_state is not None and self.ensemble:
            raise WorldModelsError("dream start states need one M, not an ensemble")
        if spec.dropout > 0 and self.ensemble:
            raise WorldModelsError("the dream's dropout needs one M, not an ensemble")

    def with_spec(self, spec: DreamSpec) -> Dream:
        """The same M and starts under another spec (temperature, step limit): shares the weights."""
        other = copy.copy(self)
        other.spec = spec
        return other

    def initial_state(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """M's (h, c) at the start frames idx, (1, N, H) each: zero, or the given start states."""
        if self.start_state is None:
            return self.m.initial_state(len(idx), self.device)
        return self.start_state[0][idx][None], self.start_state[1][idx][None]

    def features(self, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """C's input: [z, c, h] (use_cell) or [z, h], (N, in)."""
        h, c = state[0][0], state[1][0]
        return torch.cat([z, c, h] if self.spec.use_cell else [z, h], dim=-1)

    @torch.no_grad()
    def step(
        self,
        z: torch.Tensor,
        action_vec: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        u: torch.Tensor,
        eps: torch.Tensor,
        u_done: torch.Tensor,
        u_member: torch.Tensor | None = None,
        masks: DropoutMasks | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(z, a) -> (z_next, reward, done, state), the randomness (and each row's dropout masks) given."""
        penalty = None
        if self.ensemble:
            outs, state = self.m.step_members(z, action_vec, state)
            out, penalty = self._follow(outs, u_member)
        else:
            out, state = self.m.step(z, action_vec, state, masks)
        z_next = sample_mixture_from(out.logpi[:, 0], out.mu[:, 0], out.logsigma[:, 0],
                                     self.spec.temperature, u, eps)  # fmt: skip
        if self.vae is not None:  # back onto the frames V can produce
            z_next = self.vae.encode(self.vae.decode(z_next))[0].float()
        if out.done_logit is not None:
            p = torch.sigmoid(out.done_logit[:, 0] - self.spec.done_logit_offset)
            done = (u_done < p) if self.spec.sample_done else (p > 0.5)
        else:
            p = None
            done = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        self.last_p_done = p  # M's done probability of this step (None without a done head)
        reward = (
            torch.ones(len(z), device=z.device)
            if self.spec.alive_reward
            else out.reward[:, 0].float()
        )
        if penalty is not None:
            reward = reward - penalty
        return z_next, reward, done, state

    def _follow(
        self, outs: list[MDNOutput], u_member: torch.Tensor | None
    ) -> tuple[MDNOutput, torch.Tensor | None]:
        """The members' outputs -> the one each rollout follows this step, and the disagreement penalty
        (the std across members of their expected next z, mean over z's dimensions, times the weight)."""
        K, N = len(outs), outs[0].mu.shape[0]
        if self.spec.member_choice in ("random", "rollout") and u_member is not None:
            pick = (u_member * K).long().clamp(max=K - 1)
        else:
            pick = torch.zeros(N, dtype=torch.long, device=outs[0].mu.device)
        rows = torch.arange(N, device=pick.device)

        def chosen(field: str) -> torch.Tensor | None:
            parts = [getattr(o, field) for o in outs]
            return None if parts[0] is None else torch.stack(parts)[pick, rows]

        out = MDNOutput(*(chosen(f) for f in MDNOutput._fields))  # type: ignore[arg-type]
        penalty = None
        if self.spec.disagreement_penalty > 0:
            means = torch.stack([(o.logpi.exp() * o.mu).sum(-1)[:, 0] for o in outs])  # (K, N, Z)
            penalty = self.spec.disagreement_penalty * means.float().std(0, unbiased=False).mean(-1)
        return out, penalty

    @torch.no_grad()
    def rollout(
        self,
        params: np.ndarray | None,
        seeds: list[int],
        policy: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run len(seeds) rollouts, row i with controller params[i] (N, P) and seed seeds[i].

        `policy` instead of C: (the rows still alive, step) -> C's outputs for them, (n, outputs) in
        [-1, 1]; a fixed or random policy measured in the dream (params is then ignored).
        Returns (returns, lengths), each (N,). Finished rollouts leave the batch, so the cost follows the
        number still alive.
        """
        N = len(seeds)
        if policy is None:
            P = torch.as_tensor(np.asarray(params, np.float32), device=self.device)
        streams = _RolloutNoise(seeds, self.z_dim, self.device, member=self.ensemble,
                                keep_member=self.spec.member_choice == "rollout")  # fmt: skip
        masks = rollout_masks(self.m, seeds, self.spec.dropout, self.device)
        idx, eps0 = streams.start(len(self.start_mu))
        z = self.start_mu[idx] + self.start_std[idx] * eps0
        state = self.initial_state(idx)
        alive = torch.arange(N, device=self.device)
        returns = torch.zeros(N, device=self.device)
        lengths = torch.zeros(N, dtype=torch.long, device=self.device)
        for t in range(self.spec.max_steps):
            if policy is None:
                a = linear.act(P[alive], self.features(z, state), self.out_dim, self.spec.bias)
            else:
                a = policy(alive, t)
            u, eps, u_done, u_member = streams.next(alive)
            z, reward, done, state = self.step(
                z, self.adapter.m_action(a, self.spec.action_input), state, u, eps, u_done, u_member,
                None if masks is None else DropoutMasks(masks.input[alive], masks.hidden[alive]),
            )  # fmt: skip
            returns[alive] += reward
            lengths[alive] += 1
            if done.any():
                keep = ~done
                alive, z = alive[keep], z[keep]
                state = (state[0][:, keep], state[1][:, keep])
                if len(alive) == 0:
                    break
        return returns.cpu().numpy(), lengths.cpu().numpy()


class DreamSlots:
    """N dream rollouts stepped as one batch, each slot restarted on its own with its own seed: the core of
    the dream envs. A slot's random numbers come from its seed exactly as `Dream.rollout` draws them, so a
    slot given C's actions plays the rollout `Dream.rollout` plays for that seed, step for step."""

    def __init__(self, dream: Dream, n: int) -> None:
        self.dream, self.n = dream, n
        Z, dev = dream.z_dim, dream.device
        h0 = dream.m.initial_state(1, dev)[
            0
        ]  # (layers, 1, H): layers = an ensemble's members, or 1
        self.width = 2 * Z + 1
        self.gens: list[torch.Generator | None] = [None] * n
        self.member_gens: list[torch.Generator | None] = [None] * n
        self.buf = torch.zeros(n, CHUNK, self.width, device=dev)
        self.members = torch.zeros(n, CHUNK, device=dev)
        self.t = torch.full((n,), CHUNK, dtype=torch.long)
        self.rows = torch.arange(n)
        self.z = torch.zeros(n, Z, device=dev)
        self.h = torch.zeros(h0.shape[0], n, h0.shape[2], device=dev)
        self.c = torch.zeros_like(self.h)
        self.steps = np.zeros(n, np.int64)
        # each slot's dropout masks (None at rate 0), drawn from its seed on restart
        self.masks = rollout_masks(dream.m, [0] * n, dream.spec.dropout, dev)

    def restart(self, slots: list[int], seeds: list[int]) -> None:
        """Start a new rollout in each of `slots`, with the matching seed."""
        d = self.dream
        for i, s in zip(slots, seeds, strict=True):
            g = torch.Generator().manual_seed(int(s))
            k, eps = _start_draw(g, len(d.start_mu), d.z_dim)
            idx = k[None].to(d.device)
            self.z[i] = d.start_mu[idx[0]] + d.start_std[idx[0]] * eps.to(d.device)
            h, c = d.initial_state(idx)
            self.h[:, i], self.c[:, i] = h[:, 0], c[:, 0]
            self.gens[i], self.t[i], self.steps[i] = g, CHUNK, 0
            if d.ensemble:
                self.member_gens[i] = torch.Generator().manual_seed(seed_for(int(s), MEMBER_KEY))
            if self.masks is not None:
                mine = rollout_masks(d.m, [s], d.spec.dropout, d.device)
                self.masks.input[i], self.masks.hidden[i] = mine.input[0], mine.hidden[0]  # type: ignore[union-attr]

    def features(self) -> torch.Tensor:
        """C's input for every slot, (N, in)."""
        return self.dream.features(self.z, (self.h, self.c))

    @torch.no_grad()
    def step(self, outputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """C's outputs (N, O) in [-1, 1] for every slot -> (reward, done), each (N,)."""
        keep = self.dream.spec.member_choice == "rollout"
        for i in torch.nonzero(self.t == CHUNK)[:, 0].tolist():
            self.buf[i] = torch.rand(CHUNK, self.width, generator=self.gens[i]).to(self.buf.device)
            if self.dream.ensemble and (self.steps[i] == 0 or not keep):
                self.members[i] = _member_numbers(self.member_gens[i], keep).to(self.buf.device)
            self.t[i] = 0
        at = self.t.to(self.buf.device)
        row = self.buf[self.rows, at]
        u_member = self.members[self.rows, at] if self.dream.ensemble else None
        self.t += 1
        u, eps, u_done = _split_row(row, self.dream.z_dim)
        d = self.dream
        vec = d.adapter.m_action(outputs.to(d.device), d.spec.action_input)
        self.z, reward, done, (self.h, self.c) = self.dream.step(
            self.z, vec, (self.h, self.c), u, eps, u_done, u_member, self.masks
        )
        self.steps += 1
        return reward.float().cpu().numpy(), done.cpu().numpy()

    @torch.no_grad()
    def pictures(self, vae: torch.nn.Module) -> np.ndarray:
        """V's decoding of every slot's z, uint8 (N, 64, 64, 3)."""
        img = vae.decode(self.z.to(next(vae.parameters()).device)).float()
        return img.permute(0, 2, 3, 1).clamp(0, 1).mul(255).round().byte().cpu().numpy()


OBSERVATIONS = ("features", "pixels")


def _spaces(dream: Dream, observation: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    if observation not in OBSERVATIONS:
        raise WorldModelsError(
            f"observation {observation!r}: choose one of {', '.join(OBSERVATIONS)}"
        )
    if observation == "pixels":
        obs = gym.spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8)
    else:
        n = dream.z_dim + dream.m.hidden * (2 if dream.spec.use_cell else 1)
        obs = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
    return obs, gym.spaces.Box(-1.0, 1.0, (dream.out_dim,), np.float32)


class DreamEnv(gym.Env):
    """One dream rollout as a Gymnasium env. Action: C's outputs in [-1, 1] (the dream maps them to M's
    action vector as the real agent does); reward and termination as C's training dream reads them (+1
    per step alive, or M's reward head; M's done head, thresholded or sampled as configured); truncation at
    the dream's step limit. Observation: `features`, C's input [z, (c), h], or `pixels`, V's decoding of z
    (needs V). `render()` decodes z with V (render_mode `rgb_array`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        dream: Dream,
        vae: torch.nn.Module | None = None,
        render_mode: str | None = None,
        observation: str = "features",
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise WorldModelsError(
                f"render_mode {render_mode!r}: the dream renders `rgb_array` only"
            )
        if vae is None and (observation == "pixels" or render_mode is not None):
            raise WorldModelsError("the dream's pixels need V: give the env the run's V")
        self.dream, self.vae, self.render_mode, self.kind = dream, vae, render_mode, observation
        self.observation_space, self.action_space = _spaces(dream, observation)
        self.slots = DreamSlots(dream, 1)
        self._started = False

    @property
    def z(self) -> torch.Tensor:
        """The dream's z now, (1, Z)."""
        return self.slots.z[:1]

    def observation(self) -> np.ndarray:
        """The observation now: C's input (in,) float32, or V's picture (64, 64, 3) uint8."""
        if self.kind == "pixels":
            return self.slots.pictures(self.vae)[0]  # type: ignore[arg-type]
        return self.slots.features()[0].cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        s = int(self.np_random.integers(2**31)) if seed is None else int(seed)
        self.slots.restart([0], [s])
        self._started = True
        return self.observation(), {}

    def step(self, action):
        if not self._started:
            raise WorldModelsError("DreamEnv.step: call reset() first")
        a = np.asarray(action, np.float32).reshape(1, -1)
        if a.shape[1] != self.dream.out_dim:
            raise WorldModelsError(
                f"DreamEnv.step: expected {self.dream.out_dim} action value(s), got {a.shape[1]}"
            )
        reward, done = self.slots.step(torch.from_numpy(np.clip(a, -1.0, 1.0)))
        terminated = bool(done[0])
        truncated = bool(self.slots.steps[0] >= self.dream.spec.max_steps) and not terminated
        self._started = not (terminated or truncated)
        return self.observation(), float(reward[0]), terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.vae is None or self.render_mode is None:
            return None
        return self.slots.pictures(self.vae)[0]


class DreamVectorEnv(gym.vector.VectorEnv):
    """`num_envs` dream rollouts stepped as one batch, as CMA-ES's dream does: a Gymnasium vector env
    with the single `DreamEnv`'s spaces, reward and ends. A rollout that ended is restarted on the next
    `step` (Gymnasium's next-step autoreset: that step's action is ignored, its reward is 0) with a seed
    drawn from the env's generator; `reset(seed=S)` gives env i the seed S + i (or a list, one each)."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        dream: Dream,
        num_envs: int,
        vae: torch.nn.Module | None = None,
        observation: str = "features",
    ) -> None:
        if num_envs < 1:
            raise WorldModelsError(f"num_envs {num_envs}: must be >= 1")
        if vae is None and observation == "pixels":
            raise WorldModelsError("the dream's pixels need V: give the env the run's V")
        self.dream, self.vae, self.kind, self.num_envs = dream, vae, observation, num_envs
        self.single_observation_space, self.single_action_space = _spaces(dream, observation)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.slots = DreamSlots(dream, num_envs)
        self._ended = np.zeros(num_envs, bool)
        self._started = False

    def observations(self) -> np.ndarray:
        if self.kind == "pixels":
            return self.slots.pictures(self.vae)  # type: ignore[arg-type]
        return self.slots.features().cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple)):
            if len(seed) != self.num_envs:
                raise WorldModelsError(f"reset: {len(seed)} seeds for {self.num_envs} envs")
            seeds = [int(s) for s in seed]
            super().reset(seed=seeds[0])
        else:
            super().reset(seed=seed)
            base = int(self.np_random.integers(2**31)) if seed is None else int(seed)
            seeds = [base + i for i in range(self.num_envs)]
        self.slots.restart(list(range(self.num_envs)), seeds)
        self._ended[:] = False
        self._started = True
        return self.observations(), {}

    def step(self, actions):
        if not self._started:
            raise WorldModelsError("DreamVectorEnv.step: call reset() first")
        a = np.asarray(actions, np.float32).reshape(self.num_envs, -1)
        restart = np.nonzero(self._ended)[0].tolist()
        reward, done = self.slots.step(torch.from_numpy(np.clip(a, -1.0, 1.0)))
        terminated = done.astype(bool)
        truncated = (self.slots.steps >= self.dream.spec.max_steps) & ~terminated
        if restart:  # their step above went nowhere: they start again here, as next-step autoreset
            seeds = self.np_random.integers(2**31, size=len(restart)).tolist()
            self.slots.restart(restart, seeds)
            reward[restart], terminated[restart], truncated[restart] = 0.0, False, False
        self._ended = terminated | truncated
        return self.observations(), reward.astype(np.float64), terminated, truncated, {}


# ------------------------------------------------------------------------------- building a run's dream


@dataclass(frozen=True)
class StartStates:
    """Dream starts at any step of real episodes: the frame's (mu, logvar), (N, Z), and M's (h, c) after
    the episode's earlier frames and actions, (N, H) each."""

    mu: np.ndarray
    logvar: np.ndarray
    h: np.ndarray
    c: np.ndarray
    episodes: np.ndarray
    """Which latent file (index into list_episodes(RUN_DIR/latents)) each start comes from, (N,)."""
    steps: np.ndarray
    """The step of its episode each start was taken at (0: the first frame), (N,)."""


def _latent_paths(run_dir: Path) -> list[Path]:
    paths = list_episodes(RunDir(run_dir).latents)
    if not paths:
        raise WorldModelsError(
            f"{RunDir(run_dir).latents}: no latents; run `worldmodels encode` first"
        )
    return paths


def any_step_starts(
    run_dir: Path, mdnrnn: MDNRNN, n: int, seed: int, device: torch.device
) -> StartStates:
    """n start states drawn uniformly over every step of the run's latent episodes (with replacement).
    M is fed each chosen episode from its first frame, z sampled from (mu, logvar) as in training and in
    the real-env agent, and its (h, c) is read just before the chosen step (zero at step 0)."""
    paths = _latent_paths(run_dir)
    lengths = np.array([episode_length(p) for p in paths])
    rng = rng_for(seed, STREAM_DREAM_STARTS)
    flat = rng.choice(int(lengths.sum()), size=n, replace=True)
    episode = np.searchsorted(np.cumsum(lengths), flat, side="right")
    step = flat - np.concatenate([[0], np.cumsum(lengths)[:-1]])[episode]
    return starts_at(paths, mdnrnn, episode, step, rng, device)


def failure_points(
    paths: list[Path], first_index: int, stretch: int, lead: int, alive_bonus: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(index into the latent files `paths`, step) of every place where C lost ground in the episodes it
    played (those of index `first_index` on: iterative training's rounds): the first step of each run of
    at least `stretch` steps without a positive reward (CarRacing: no new tile, the car off the track or
    stopped) and the last step of an episode that ended terminated badly, each moved `lead` steps back
    (not before 0).
    An end is bad when its last reward is negative (CarRacing: off the playfield, -100; finishing the lap
    also terminates, with a tile's reward) or, where the reward is an alive bonus (`alive_bonus`,
    DoomTakeCover), always: a death."""
    episodes, steps = [], []
    for e, path in enumerate(paths):
        if episode_index(path) < first_index:
            continue
        f = load_npz(path, ("reward", "terminated"), what="latent")
        points = [t - stretch + 1 for t in _run_ends(f["reward"] <= 0, stretch)]
        if len(f["terminated"]) and f["terminated"][-1] and (alive_bonus or f["reward"][-1] < 0):
            points.append(len(f["reward"]) - 1)
        for t in points:
            episodes.append(e)
            steps.append(max(t - lead, 0))
    return np.array(episodes, np.int64), np.array(steps, np.int64)


def _run_ends(flags: np.ndarray, length: int) -> list[int]:
    """The step at which each run of True reaches `length` steps (one per run)."""
    out, run = [], 0
    for t, f in enumerate(flags):
        run = run + 1 if f else 0
        if run == length:
            out.append(t)
    return out


def failure_starts(run_dir: Path, cfg: Config, mdnrnn: MDNRNN, device: torch.device) -> StartStates:
    """controller.dream_starts `failures`: every episode's first frame (the paper's starts, zero memory)
    and, as `controller.failure_share` of all starts, frames shortly before a place where C failed
    (failure_points), drawn with replacement, each with M's memory of its episode up to there. Before
    any round has played, only first frames."""
    c = cfg.controller
    paths = _latent_paths(run_dir)
    rng = rng_for(cfg.seed, STREAM_DREAM_STARTS)
    fail_ep, fail_step = failure_points(paths, cfg.collect.episodes, c.failure_stretch,
                                        c.failure_lead, adapter_for(cfg.env.id).reward_is_alive_bonus)  # fmt: skip
    n_fail = round(len(paths) * c.failure_share / (1 - c.failure_share)) if len(fail_ep) else 0
    pick = rng.choice(len(fail_ep), size=n_fail, replace=True)
    failed = starts_at(paths, mdnrnn, fail_ep[pick], fail_step[pick], rng, device)
    mu, logvar = dream_starts(run_dir)
    zeros = np.zeros((len(paths), mdnrnn.hidden), np.float32)
    return StartStates(
        np.concatenate([mu, failed.mu]), np.concatenate([logvar, failed.logvar]),
        np.concatenate([zeros, failed.h]), np.concatenate([zeros, failed.c]),
        np.concatenate([np.arange(len(paths)), failed.episodes]),
        np.concatenate([np.zeros(len(paths), np.int64), failed.steps]),
    )  # fmt: skip


@torch.no_grad()
def starts_at(
    paths: list[Path],
    mdnrnn: MDNRNN,
    episode: np.ndarray,
    step: np.ndarray,
    rng: np.random.Generator,
    device: torch.device,
    chunk: int = 256,
) -> StartStates:
    """Start states at (latent file `paths[episode[i]]`, `step[i]`): the frame's (mu, logvar) and M's
    (h, c) after the episode's earlier frames (z sampled with a generator seeded from `rng`) and actions."""
    n = len(episode)
    Z, H = mdnrnn.z_dim, mdnrnn.hidden
    if n == 0:
        return StartStates(*(np.zeros((0, d), np.float32) for d in (Z, Z, H, H)), episode, step)
    out = StartStates(np.zeros((n, Z), np.float32), np.zeros((n, Z), np.float32),
                      np.zeros((n, H), np.float32), np.zeros((n, H), np.float32), episode, step)  # fmt: skip
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    wanted = np.unique(episode)
    for part in range(0, len(wanted), chunk):
        eps = wanted[part : part + chunk]
        data = [load_npz(paths[e], ("mu", "logvar", "action"), what="latent") for e in eps]
        # which start (index into out) reads which row b of the batch after t steps of memory
        starts = np.flatnonzero(np.isin(episode, eps))
        row_of = np.searchsorted(eps, episode[starts])
        out.mu[starts] = [data[b]["mu"][step[i]] for b, i in zip(row_of, starts, strict=True)]
        out.logvar[starts] = [
            data[b]["logvar"][step[i]] for b, i in zip(row_of, starts, strict=True)
        ]
        T = int(step[starts].max())  # steps of memory needed
        if T == 0:
            continue
        B, A = len(eps), data[0]["action"].shape[1]
        mu = np.zeros((B, T, Z), np.float32)
        logvar = np.zeros((B, T, Z), np.float32)
        action = np.zeros((B, T, A), np.float32)
        for b, d in enumerate(data):
            k = min(T, len(d["action"]))
            mu[b, :k], logvar[b, :k], action[b, :k] = d["mu"][:k], d["logvar"][:k], d["action"][:k]
        z = sample_z(torch.from_numpy(mu), torch.from_numpy(logvar), gen).to(device)
        a = torch.from_numpy(action).to(device)
        state = mdnrnn.initial_state(B, device)
        for t in range(1, T + 1):
            state = mdnrnn.advance(z[:, t - 1], a[:, t - 1], state)
            hit = starts[step[starts] == t]
            if len(hit):
                rows = torch.as_tensor(row_of[step[starts] == t], device=device)
                out.h[hit] = state[0][0, rows].float().cpu().numpy()
                out.c[hit] = state[1][0, rows].float().cpu().numpy()
    return out


def build_dream(
    run_dir: Path,
    cfg: Config,
    device: Any = None,
    for_pictures: bool = False,
    mdnrnn: Path | MDNRNN | MDNRNNEnsemble | None = None,
    starts: str = "first",
) -> Dream:
    """M as a batched env (the agent's M, RunDir.agent, unless `mdnrnn` names one's file or is an M already
    loaded on `device`, used as it is). `for_pictures`: only z is wanted (render), so a missing reward is no
    error. `starts`: `first` frames of real episodes, `any`
    step of them with M's memory there, or first frames and `failures` (controller.dream_starts; C's
    training dream)."""
    device = device or resolve_device(cfg.device)
    adapter = adapter_of(cfg)
    alive = (adapter.reward_is_alive_bonus or for_pictures) and not cfg.mdnrnn.reward_head
    spec = DreamSpec.of(cfg, alive_reward=alive)
    vae = load_vae(RunDir(run_dir).vae, cfg, device) if spec.reproject_z else None
    if isinstance(mdnrnn, (MDNRNN, MDNRNNEnsemble)):
        m = mdnrnn
    else:
        m = load_mdnrnn(Path(mdnrnn) if mdnrnn else RunDir(run_dir).agent(cfg)[0], cfg, device)
    if starts in ("any", "failures"):
        at = (
            any_step_starts(run_dir, m, cfg.controller.dream_start_states, cfg.seed, device)
            if starts == "any"
            else failure_starts(run_dir, cfg, m, device)
        )
        mu, logvar, state = at.mu, at.logvar, (at.h, at.c)
    else:
        (mu, logvar), state = dream_starts(run_dir), None
    return Dream(m, adapter, mu, logvar, spec, device, vae, state)
