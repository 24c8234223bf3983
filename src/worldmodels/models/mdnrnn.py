"""M: an LSTM over [z_t, a_t] with a mixture density head over z_{t+1} (and done, reward heads).

Notation: B batch, T time, Z latent size, A action size, H LSTM units, K mixture components.
One class serves whole sequences (training) and single steps (rollouts, the dream) with the same weights.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

State = tuple[torch.Tensor, torch.Tensor]


class DropoutMasks(NamedTuple):
    """One dropout mask per sequence (or dream rollout), held for all its steps (variational dropout):
    0 or 1 / (1 - rate) per unit, so M at rate 0 (evaluation, the real-env agent) needs no rescaling."""

    input: torch.Tensor  # (B, Z + A): multiplies the LSTM's input [z_t, a_t]
    hidden: torch.Tensor  # (B, H): multiplies h_{t-1} where it enters the LSTM's next step


def dropout_masks(
    batch: int,
    z_dim: int,
    action_dim: int,
    hidden: int,
    rate: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> DropoutMasks:
    """Fresh masks for `batch` sequences: each unit kept with probability 1 - rate (its uniform >= rate),
    scaled by 1 / (1 - rate). The uniforms come from `generator`, so a resumed training draws the same."""
    u = torch.rand(batch, z_dim + action_dim + hidden, generator=generator, device=device)
    keep = (u >= rate).float() / (1.0 - rate)
    return DropoutMasks(keep[:, : z_dim + action_dim], keep[:, z_dim + action_dim :])


class MDNOutput(NamedTuple):
    logpi: (
        torch.Tensor
    )  # (B, T, Z, K) log mixture weights (normalised); (B, T, 1, K) for a joint mixture
    mu: torch.Tensor  # (B, T, Z, K)
    logsigma: torch.Tensor  # (B, T, Z, K)
    done_logit: torch.Tensor | None  # (B, T) logit of "this step ends the episode"
    reward: torch.Tensor | None  # (B, T) predicted reward of this step


class MDNRNN(nn.Module):
    def __init__(
        self,
        z_dim: int,
        action_dim: int,
        hidden: int,
        n_mixtures: int = 5,
        done_head: bool = True,
        reward_head: bool = False,
        joint_mixture: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.k = z_dim, action_dim, hidden, n_mixtures
        self.done_head, self.reward_head, self.joint = done_head, reward_head, joint_mixture
        # the training rate (mdnrnn.dropout); the masks themselves are given to forward and step
        self.dropout = dropout
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        n_pi = n_mixtures if joint_mixture else z_dim * n_mixtures
        n_out = n_pi + 2 * z_dim * n_mixtures + int(done_head) + int(reward_head)
        self.head = nn.Linear(hidden, n_out)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Zero (h, c), each (1, B, H)."""
        zeros = torch.zeros(1, batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def masks(
        self, batch: int, rate: float, generator: torch.Generator | None = None
    ) -> DropoutMasks | None:
        """Dropout masks for `batch` sequences at `rate` (None at rate 0: the plain M)."""
        if rate <= 0:
            return None
        device = self.head.weight.device
        return dropout_masks(
            batch, self.z_dim, self.action_dim, self.hidden, rate, generator, device
        )

    def forward(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        state: State | None = None,
        masks: DropoutMasks | None = None,
    ) -> tuple[MDNOutput, State]:
        """z (B, T, Z), action (B, T, A) -> the distribution of z_{t+1} for every t, and the new state.
        With `masks`, the input and the fed-back h of each sequence are multiplied by its masks."""
        x = torch.cat([z, action], dim=-1)
        if masks is None:
            out, state = self.lstm(x, state)
        elif x.shape[1] == 1:  # one step: the LSTM itself, on the masked input and h
            h, c = self.initial_state(len(x), x.device) if state is None else state
            out, state = self.lstm(x * masks.input[:, None], (h * masks.hidden[None], c))
        else:
            out, state = self._unrolled(x * masks.input[:, None], state, masks.hidden)
        return self.heads(out), state

    def _unrolled(
        self, x: torch.Tensor, state: State | None, hidden_mask: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """The LSTM step by step, h_{t-1} masked where it enters step t (the fused LSTM cannot): the
        same equations as nn.LSTM (gates i, f, g, o). The input projection of every step is one matrix
        product; under autocast the recurrent weight is cast once, not once a step. About 1.5x the fused
        LSTM's time on a 2-core CPU (bf16, batch 32 x 500 steps, H 512)."""
        lstm = self.lstm
        B = x.shape[0]
        h, c = self.initial_state(B, x.device) if state is None else state
        h, c = h[0], c[0].float()
        inputs = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0).unbind(1)
        w = lstm.weight_hh_l0.t()
        if torch.is_autocast_enabled(x.device.type):
            w = w.to(torch.get_autocast_dtype(x.device.type))
        outs = []
        for xw in inputs:
            gates = (xw + torch.mm((h * hidden_mask).to(w.dtype), w)).float()
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, dim=1), (h[None], c[None])

    def heads(self, h: torch.Tensor) -> MDNOutput:
        """LSTM outputs h (B, T, H) -> MDNOutput (computed in fp32 for a stable loss)."""
        y = self.head(h).float()
        B, T = y.shape[:2]
        n = self.z_dim * self.k
        shape = (B, T, self.z_dim, self.k)
        n_pi = self.k if self.joint else n
        logpi = F.log_softmax(y[..., :n_pi].reshape(B, T, -1, self.k), dim=-1)
        mu = y[..., n_pi : n_pi + n].reshape(shape)
        logsigma = y[..., n_pi + n : n_pi + 2 * n].reshape(shape)
        i = n_pi + 2 * n
        done = reward = None
        if self.done_head:
            done, i = y[..., i], i + 1
        if self.reward_head:
            reward = y[..., i]
        return MDNOutput(logpi, mu, logsigma, done, reward)

    def step(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        state: State | None = None,
        masks: DropoutMasks | None = None,
    ) -> tuple[MDNOutput, State]:
        """One step: z (B, Z), action (B, A) -> MDNOutput with T = 1, and the new state."""
        return self.forward(z[:, None], action[:, None], state, masks)

    def advance(self, z: torch.Tensor, action: torch.Tensor, state: State | None = None) -> State:
        """Only the memory of one step, z (B, Z), action (B, A) -> the new (h, c): what the real-env agent
        needs (it never samples M's prediction). The same LSTM call as `step`, so the same state."""
        return self.lstm(torch.cat([z, action], dim=-1)[:, None], state)[1]


class MDNRNNEnsemble(nn.Module):
    """K members of the same shape, each from its own initialisation (and, in training, its own bootstrap
    weights on the sequences). To the real-env agent it is one M whose memory has K layers: state (h, c) is
    (K, B, H) each, `advance` moves every member, and C reads member 0's h (and c), as with a single M. The
    dream (`dream.Dream`) steps every member and samples the next z from one of them (`step_members`)."""

    def __init__(self, members: list[MDNRNN]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        first = members[0]
        self.z_dim, self.action_dim, self.hidden, self.k = (
            first.z_dim,
            first.action_dim,
            first.hidden,
            first.k,
        )
        self.done_head, self.reward_head = first.done_head, first.reward_head

    @property
    def primary(self) -> MDNRNN:
        return self.members[0]  # type: ignore[return-value]

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        zeros = torch.zeros(len(self.members), batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def _member_state(self, state: State | None, i: int) -> State | None:
        return None if state is None else (state[0][i : i + 1], state[1][i : i + 1])

    def members_forward(
        self, z: torch.Tensor, action: torch.Tensor, state: State | None = None
    ) -> tuple[list[MDNOutput], State]:
        """Every member over whole sequences: their outputs and the stacked new state."""
        outs, hs, cs = [], [], []
        for i, m in enumerate(self.members):
            out, (h, c) = m(z, action, self._member_state(state, i))
            outs.append(out)
            hs.append(h)
            cs.append(c)
        return outs, (torch.cat(hs), torch.cat(cs))

    def step_members(
        self, z: torch.Tensor, action: torch.Tensor, state: State | None = None
    ) -> tuple[list[MDNOutput], State]:
        """One step of every member: their outputs (T = 1 each) and the stacked new state."""
        return self.members_forward(z[:, None], action[:, None], state)

    def forward(
        self, z: torch.Tensor, action: torch.Tensor, state: State | None = None
    ) -> tuple[MDNOutput, State]:
        """Member 0's prediction over whole sequences (validation, pictures); the state of every member."""
        outs, state = self.members_forward(z, action, state)
        return outs[0], state

    def step(
        self, z: torch.Tensor, action: torch.Tensor, state: State | None = None
    ) -> tuple[MDNOutput, State]:
        return self.forward(z[:, None], action[:, None], state)

    def advance(self, z: torch.Tensor, action: torch.Tensor, state: State | None = None) -> State:
        hs, cs = zip(*(m.advance(z, action, self._member_state(state, i))
                       for i, m in enumerate(self.members)))  # fmt: skip
        return torch.cat(hs), torch.cat(cs)


def mdn_nll(
    logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of x (..., Z) under the per-dimension mixture (..., Z, K): returns (..., Z).
    Under a joint mixture (logpi (..., 1, K): one component for all of z, diagonal within it) the whole
    vector's NLL divided by Z, as (..., 1): either way its mean over the last axis is nats per dimension.

    Negative values are normal: these are densities of continuous variables.
    """
    x = x.unsqueeze(-1)
    log_prob = -0.5 * ((x - mu) * torch.exp(-logsigma)) ** 2 - logsigma - LOG_SQRT_2PI
    if logpi.shape[-2] == 1 and mu.shape[-2] > 1:
        joint = torch.logsumexp(logpi[..., 0, :] + log_prob.sum(-2), dim=-1)
        return (-joint / mu.shape[-2]).unsqueeze(-1)
    return -torch.logsumexp(logpi + log_prob, dim=-1)


def sample_mixture(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    tau: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample z (..., Z) at temperature tau as the paper: logits / tau, noise scaled by sqrt(tau),
    the component chosen independently per dimension (one for all dimensions under a joint mixture)."""
    lead = logpi.shape[:-1]
    u = torch.rand(lead, generator=generator, device=mu.device)
    eps = torch.randn(lead, generator=generator, device=mu.device)
    return sample_mixture_from(logpi, mu, logsigma, tau, u, eps)


def sample_mixture_from(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    tau: float,
    u: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """`sample_mixture` with its randomness given: u ~ U(0, 1) picks the component (inverse CDF of
    softmax(logpi / tau)), eps ~ N(0, 1) the noise; both (..., Z). Lets every rollout of a batch own its
    random stream, so a batched dream equals the same rollouts run one by one. Under a joint mixture
    (logpi (..., 1, K)) u's first entry picks the one component of every dimension."""
    probs = torch.softmax(logpi.float() / tau, dim=-1)
    if probs.shape[-2] == 1:
        u = u[..., :1]
    k = (probs.cumsum(-1) < u.unsqueeze(-1)).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    k = k.expand(*mu.shape[:-1], 1)
    mu_k = mu.gather(-1, k).squeeze(-1)
    sigma_k = logsigma.gather(-1, k).squeeze(-1).exp()
    return mu_k + sigma_k * math.sqrt(tau) * eps
