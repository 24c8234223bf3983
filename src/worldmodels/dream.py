"""The dream: M as an environment. A whole CMA-ES generation (population x trials rollouts) advances as one
tensor batch; each rollout owns a random stream seeded by its own seed, so a batch of rollouts gives the
same trajectories as running them one at a time. Also a single Gymnasium env (`DreamEnv`) for inspection.

Per step: C sees [z, (c), h]; its action is mapped to M's action vector; M steps; z_{t+1} is sampled at
temperature tau; done = sigmoid(done_logit) > 0.5 (or sampled; optionally with the done loss's weight
undone first); reward is +1 per step survived (envs whose reward is an alive bonus, like Doom) or M's
reward head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from worldmodels.config import Config
from worldmodels.envs import Adapter
from worldmodels.errors import WorldModelsError
from worldmodels.models import controller as C
from worldmodels.models.mdnrnn import MDNRNN, MDNOutput, MDNRNNEnsemble, sample_mixture_from
from worldmodels.models.vae import ConvVAE
from worldmodels.utils import seed_for

CHUNK = 32  # steps of random numbers drawn at a time per rollout
MEMBER_KEY = 1  # the second random stream of a rollout's seed: which ensemble member it follows


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
    """Ensemble M: follow a member drawn per step and rollout (`random`) or member 0 (`first`)."""
    disagreement_penalty: float = 0.0
    """Ensemble M: subtracted from each step's reward, times the members' disagreement."""

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
        )


class _Streams:
    """Per-rollout random numbers, CHUNK steps at a time: u and eps for z (Z each), u for done (1). With an
    ensemble M, u for the member comes from a second stream of the rollout's seed, so the first stream
    (and a one-member ensemble's dream) is the same as a single M's."""

    def __init__(
        self, seeds: list[int], z_dim: int, device: torch.device, member: bool = False
    ) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.member_gens = (
            [torch.Generator().manual_seed(seed_for(int(s), MEMBER_KEY)) for s in seeds]
            if member
            else None
        )
        self.z_dim, self.device = z_dim, device
        self.t = CHUNK

    def start(self, n_starts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which real first frame each rollout starts from, and the noise of its initial z."""
        idx = torch.stack([torch.randint(n_starts, (1,), generator=g) for g in self.gens])[:, 0]
        eps = torch.stack([torch.randn(self.z_dim, generator=g) for g in self.gens])
        return idx.to(self.device), eps.to(self.device)

    def next(
        self, alive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self.t == CHUNK:
            width = 2 * self.z_dim + 1
            self.buf = torch.stack([torch.rand(CHUNK, width, generator=g) for g in self.gens]).to(
                self.device
            )
            if self.member_gens is not None:
                self.members = torch.stack(
                    [torch.rand(CHUNK, generator=g) for g in self.member_gens]
                ).to(self.device)
            self.t = 0
        row = self.buf[alive, self.t]
        u_member = None if self.member_gens is None else self.members[alive, self.t]
        self.t += 1
        Z = self.z_dim
        u = row[:, :Z]
        eps = torch.erfinv(2 * row[:, Z : 2 * Z].clamp(1e-7, 1 - 1e-7) - 1) * (2**0.5)  # N(0, 1)
        return u, eps, row[:, 2 * Z], u_member


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
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(z, a) -> (z_next, reward, done, state), the randomness given."""
        penalty = None
        if self.ensemble:
            outs, state = self.m.step_members(z, action_vec, state)
            out, penalty = self._follow(outs, u_member)
        else:
            out, state = self.m.step(z, action_vec, state)
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
        if self.spec.member_choice == "random" and u_member is not None:
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
        streams = _Streams(seeds, self.z_dim, self.device, member=self.ensemble)
        idx, eps0 = streams.start(len(self.start_mu))
        z = self.start_mu[idx] + self.start_std[idx] * eps0
        state = self.initial_state(idx)
        alive = torch.arange(N, device=self.device)
        returns = torch.zeros(N, device=self.device)
        lengths = torch.zeros(N, dtype=torch.long, device=self.device)
        for t in range(self.spec.max_steps):
            if policy is None:
                a = C.act(P[alive], self.features(z, state), self.out_dim, self.spec.bias)
            else:
                a = policy(alive, t)
            u, eps, u_done, u_member = streams.next(alive)
            z, reward, done, state = self.step(
                z, self.adapter.controller_to_vector(a), state, u, eps, u_done, u_member
            )
            returns[alive] += reward
            lengths[alive] += 1
            if done.any():
                keep = ~done
                alive, z = alive[keep], z[keep]
                state = (state[0][:, keep], state[1][:, keep])
                if len(alive) == 0:
                    break
        return returns.cpu().numpy(), lengths.cpu().numpy()


class DreamEnv(gym.Env):
    """One dream rollout as a Gymnasium env. Observation: C's input [z, (c), h]; action: C's tanh outputs
    in [-1, 1]; `render()` decodes z to pixels with V's decoder when one is given."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self, dream: Dream, vae: torch.nn.Module | None = None, render_mode: str | None = None
    ):
        self.dream, self.vae, self.render_mode = dream, vae, render_mode
        n = dream.z_dim + dream.m.hidden * (2 if dream.spec.use_cell else 1)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (dream.out_dim,), np.float32)

    def observation(self) -> np.ndarray:
        """C's input now, (in,)."""
        return self.dream.features(self.z, self.state)[0].cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        s = int(self.np_random.integers(2**31)) if seed is None else seed
        self.streams = _Streams([s], self.dream.z_dim, self.dream.device, self.dream.ensemble)
        idx, eps0 = self.streams.start(len(self.dream.start_mu))
        self.z = self.dream.start_mu[idx] + self.dream.start_std[idx] * eps0
        self.state = self.dream.initial_state(idx)
        self.t = 0
        return self.observation(), {}

    def step(self, action):
        a = torch.as_tensor(np.asarray(action, np.float32).reshape(1, -1), device=self.dream.device)
        u, eps, u_done, u_member = self.streams.next(torch.zeros(1, dtype=torch.long))
        self.z, reward, done, self.state = self.dream.step(
            self.z, self.dream.adapter.controller_to_vector(a), self.state, u, eps, u_done, u_member
        )
        self.t += 1
        truncated = self.t >= self.dream.spec.max_steps and not bool(done[0])
        return self.observation(), float(reward[0]), bool(done[0]), truncated, {}

    @torch.no_grad()
    def render(self) -> np.ndarray | None:
        if self.vae is None:
            return None
        img = self.vae.decode(self.z.to(next(self.vae.parameters()).device))[0]
        return img.permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().cpu().numpy()
