"""Action spaces as M and C see them: one codec per Gymnasium space, composed for Dict spaces.

A codec knows four things about a space: the float vector M sees for an env action (`encode`) and back
(`decode`), how C's tanh outputs in [-1, 1] become that vector (`from_controller`, batched, in torch), and a
uniform random action (`sample`). Discrete is one-hot (C: the argmax), MultiBinary a 0/1 vector (C: output
> 0), Box the action itself (C: tanh scaled to the bounds; an infinite or huge bound counts as +-1), and a Dict the
concatenation of its parts in key order (ViZDoom's Deathmatch: buttons plus mouse deltas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmodels.errors import WorldModelsError

UNBOUNDED = 1e10
"""A Box bound this large (or infinite) is taken as no bound: C's tanh is then scaled to [-1, 1]."""

KEYS = "1234567890qwertyuiopasdfghjklzxcvbnm"
"""Keys handed out, in order, to the controls of a generic action space (`worldmodels play`)."""


@dataclass(frozen=True)
class Control:
    """A key a person holds to act: while held, C's outputs at the given indices take the given values."""

    key: str
    """The browser's KeyboardEvent.key, e.g. "ArrowLeft" or "1"."""
    label: str
    sets: dict[int, float]


@dataclass
class Controls:
    """How a person drives: C's outputs with no key held (`neutral`), and the keys."""

    neutral: list[float]
    keys: list[Control] = field(default_factory=list)

    def outputs(self, held: list[str] | set[str]) -> np.ndarray:
        """C's outputs (in [-1, 1]) while the keys `held` are down; later controls win on a clash."""
        a = np.array(self.neutral, np.float32)
        for c in self.keys:
            if c.key in held:
                for i, v in c.sets.items():
                    a[i] = v
        return a

    def __add__(self, other: Controls) -> Controls:
        n = len(self.neutral)
        moved = [Control(c.key, c.label, {i + n: v for i, v in c.sets.items()}) for c in other.keys]
        return Controls(self.neutral + other.neutral, self.keys + moved)


class ActionCodec:
    dim: int
    """Size of the action vector M sees (and episodes store); C has as many outputs."""

    def encode(self, action: Any) -> np.ndarray:
        raise NotImplementedError

    def decode(self, v: np.ndarray) -> Any:
        raise NotImplementedError

    def from_controller(self, a: torch.Tensor) -> torch.Tensor:
        """(N, dim) tanh outputs -> (N, dim) action vectors."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def controls(self, keys: list[str], name: str = "") -> Controls:
        """Keys for a person (taken from the front of `keys`, which shrinks): see `Controls`."""
        raise NotImplementedError


class DiscreteCodec(ActionCodec):
    def __init__(self, space: gym.spaces.Discrete) -> None:
        self.dim, self.start = int(space.n), int(space.start)

    def encode(self, action: Any) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        v[int(action) - self.start] = 1.0
        return v

    def decode(self, v: np.ndarray) -> int:
        return int(np.argmax(v)) + self.start

    def from_controller(self, a: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(a.argmax(-1), self.dim).to(a.dtype)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.dim)) + self.start

    def controls(self, keys: list[str], name: str = "") -> Controls:
        # no key: every output -1, so C's argmax is the first action; a key lifts its action to +1
        return Controls([-1.0] * self.dim, [
            Control(keys.pop(0), f"{name}action {i + self.start}", {i: 1.0})
            for i in range(self.dim) if keys
        ])  # fmt: skip


class MultiBinaryCodec(ActionCodec):
    def __init__(self, space: gym.spaces.MultiBinary) -> None:
        self.shape = tuple(space.shape)
        self.dim = int(np.prod(self.shape))
        self.dtype = space.dtype

    def encode(self, action: Any) -> np.ndarray:
        return np.asarray(action, np.float32).reshape(-1)

    def decode(self, v: np.ndarray) -> np.ndarray:
        return (np.asarray(v).reshape(self.shape) > 0.5).astype(self.dtype)

    def from_controller(self, a: torch.Tensor) -> torch.Tensor:
        return (a > 0).to(a.dtype)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, 2, self.shape).astype(self.dtype)

    def controls(self, keys: list[str], name: str = "") -> Controls:
        return Controls([-1.0] * self.dim, [
            Control(keys.pop(0), f"{name}button {i}", {i: 1.0}) for i in range(self.dim) if keys
        ])  # fmt: skip


class BoxCodec(ActionCodec):
    def __init__(self, space: gym.spaces.Box) -> None:
        self.shape, self.dtype = tuple(space.shape), space.dtype
        self.dim = int(np.prod(self.shape))
        # ViZDoom's mouse deltas say +-3.4e38 (float32's max) for "unbounded": such bounds count as +-1
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        self.low = np.where(np.abs(low) < UNBOUNDED, low, -1.0).astype(np.float32).reshape(-1)
        self.high = np.where(np.abs(high) < UNBOUNDED, high, 1.0).astype(np.float32).reshape(-1)

    def encode(self, action: Any) -> np.ndarray:
        return np.asarray(action, np.float32).reshape(-1)

    def decode(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v, self.dtype).reshape(self.shape)

    def from_controller(self, a: torch.Tensor) -> torch.Tensor:
        low = torch.as_tensor(self.low, dtype=a.dtype, device=a.device)
        high = torch.as_tensor(self.high, dtype=a.dtype, device=a.device)
        return low + (a + 1.0) * 0.5 * (high - low)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high).astype(np.float32).reshape(self.shape)

    def controls(self, keys: list[str], name: str = "") -> Controls:
        # no key: the middle of every range; two keys per dimension push it to either end
        out = Controls([0.0] * self.dim)
        for i in range(self.dim):
            for sign, end in ((-1.0, "low"), (1.0, "high")):
                if keys:
                    out.keys.append(Control(keys.pop(0), f"{name}{i} {end}", {i: sign}))
        return out


class DictCodec(ActionCodec):
    def __init__(self, space: gym.spaces.Dict) -> None:
        self.parts = {key: codec_for(sub) for key, sub in space.spaces.items()}
        self.dim = sum(c.dim for c in self.parts.values())

    def _slices(self) -> list[tuple[str, ActionCodec, slice]]:
        out, i = [], 0
        for key, codec in self.parts.items():
            out.append((key, codec, slice(i, i + codec.dim)))
            i += codec.dim
        return out

    def encode(self, action: Any) -> np.ndarray:
        return np.concatenate([self.parts[k].encode(action[k]) for k in self.parts])

    def decode(self, v: np.ndarray) -> dict[str, Any]:
        v = np.asarray(v).reshape(-1)
        return {key: codec.decode(v[s]) for key, codec, s in self._slices()}

    def from_controller(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([codec.from_controller(a[:, s]) for _, codec, s in self._slices()], -1)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {key: codec.sample(rng) for key, codec in self.parts.items()}

    def controls(self, keys: list[str], name: str = "") -> Controls:
        out = Controls([])
        for key, codec in self.parts.items():
            out = out + codec.controls(keys, f"{name}{key} ")
        return out


def codec_for(space: gym.Space) -> ActionCodec:
    """The codec of a Discrete, MultiBinary, Box or Dict (of those) action space."""
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteCodec(space)
    if isinstance(space, gym.spaces.MultiBinary):
        return MultiBinaryCodec(space)
    if isinstance(space, gym.spaces.Box):
        return BoxCodec(space)
    if isinstance(space, gym.spaces.Dict):
        return DictCodec(space)
    raise WorldModelsError(
        f"action space {space} is not Discrete, MultiBinary, Box or a Dict of those"
    )
