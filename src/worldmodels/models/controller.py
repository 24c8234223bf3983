"""C: a linear map from [z, (c), h] to actions, a = tanh(W x + b), its parameters one flat vector.

The flat layout is [W row-major (out, in), b (out) if bias]. Batched use (a whole CMA-ES population at
once, one row of parameters per rollout) goes through `act`, the same code the single controller uses.

A committee (`iterate.final_vote`) is K such vectors laid end to end: every member acts on the same input
and the action is the per-output median of theirs (K odd). A median keeps C's decisive steering where a
mean of members that steer at different moments would blur it (docs/results.md, "Several Cs driving
together").
"""

from __future__ import annotations

import numpy as np
import torch


def n_params(in_dim: int, out_dim: int, bias: bool) -> int:
    return out_dim * in_dim + (out_dim if bias else 0)


def committee_size(n: int, in_dim: int, out_dim: int, bias: bool) -> int:
    """How many controllers a flat vector of `n` parameters holds (1: one C); 0 if none fits."""
    size = n_params(in_dim, out_dim, bias)
    return n // size if n % size == 0 else 0


def act(params: torch.Tensor, x: torch.Tensor, out_dim: int, bias: bool) -> torch.Tensor:
    """params (N, P), x (N, in) -> tanh(W x + b) (N, out), each row with its own W and b. Rows of K
    controllers end to end (a committee) give the per-output median of the K members' outputs."""
    N, in_dim = x.shape
    k = params.shape[1] // n_params(in_dim, out_dim, bias)
    if k > 1:
        each = act(params.reshape(N * k, -1), x.repeat_interleave(k, 0), out_dim, bias)
        return each.reshape(N, k, out_dim).median(dim=1).values
    W = params[:, : out_dim * in_dim].reshape(N, out_dim, in_dim)
    y = torch.bmm(W, x.unsqueeze(-1)).squeeze(-1)
    if bias:
        y = y + params[:, out_dim * in_dim :]
    return torch.tanh(y)


class Controller:
    """One controller: a flat parameter vector and its shape."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool, params: np.ndarray | None = None):
        self.in_dim, self.out_dim, self.bias = in_dim, out_dim, bias
        n = n_params(in_dim, out_dim, bias)
        self.params = np.zeros(n, np.float32) if params is None else np.asarray(params, np.float32)
        if self.params.shape != (n,):
            raise ValueError(f"controller expects {n} parameters, got {self.params.shape}")

    @property
    def size(self) -> int:
        return len(self.params)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> actions (B, out) in [-1, 1]."""
        p = torch.as_tensor(self.params, device=x.device).expand(x.shape[0], -1)
        return act(p, x.float(), self.out_dim, self.bias)
