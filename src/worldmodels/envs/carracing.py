"""CarRacing-v3 (gymnasium[box2d]): drop the indicator bar, the paper's steer/gas/brake mapping."""

from __future__ import annotations

import copy

import numpy as np
import torch

from worldmodels.config import CollectConfig, ControllerConfig
from worldmodels.envs.actions import Control, Controls
from worldmodels.envs.base import Adapter, Policy, require


class BrownianActions(Policy):
    """a_{t+1} = clip(a_t + sqrt(dt) * N(0, 1)) per action dimension, from a_0 = 0.

    Chosen over the reference code's random-weights agent: it needs no model, and its smooth action paths
    both follow and leave the track, so V and M see driving, skidding and grass.
    """

    def __init__(self, dt: float) -> None:
        self.scale = float(np.sqrt(dt))
        self.low = np.array([-1.0, 0.0, 0.0], np.float32)
        self.high = np.array([1.0, 1.0, 1.0], np.float32)

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.action = np.zeros(3, np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        step = self.rng.standard_normal(3).astype(np.float32) * self.scale
        self.action = np.clip(self.action + step, self.low, self.high)
        return self.action.copy()


class CarRacingAdapter(Adapter):
    name = "carracing"
    max_gas = 1.0  # controller.max_gas: C's gas is (a1 + 1) / 2 times this
    crop_bottom = 84  # rows 84:96 hold the indicator bar
    indicator_box = (slice(56, 64), slice(7, 18))  # the full frame's speed and four ABS bars

    def __init__(self, env_id: str) -> None:
        require("Box2D", env_id, "Box2D", "carracing")
        super().__init__(env_id)

    @property
    def controller_outputs(self) -> int:
        return 3

    def controller_to_vector(self, a: torch.Tensor) -> torch.Tensor:
        """The paper: steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1); gas times max_gas
        (controller.max_gas, see `with_controller`)."""
        gas = (a[:, 1] + 1.0) / 2.0 * self.max_gas  # times 1.0 (the paper's pedal) changes no bit
        return torch.stack([a[:, 0], gas, a[:, 2].clamp(0.0, 1.0)], dim=-1)

    def with_controller(self, c: ControllerConfig) -> CarRacingAdapter:
        if c.max_gas == self.max_gas:
            return self
        capped = copy.copy(self)
        capped.max_gas = c.max_gas
        return capped

    def random_policy(self, cfg: CollectConfig) -> Policy:
        return BrownianActions(cfg.brownian_dt)

    def controls(self) -> Controls:
        # C's outputs with no key: steer 0, gas (a1 + 1) / 2 = 0, brake clip(a2) = 0
        return Controls([0.0, -1.0, -1.0], [
            Control("ArrowLeft", "steer left", {0: -1.0}),
            Control("ArrowRight", "steer right", {0: 1.0}),
            Control("ArrowUp", "gas", {1: 1.0}),
            Control("ArrowDown", "brake", {2: 1.0}),
        ])  # fmt: skip

    def describe_action(self, v: np.ndarray) -> str:
        steer, gas, brake = (float(x) for x in np.asarray(v).reshape(-1)[:3])
        return f"steer {steer:+.2f} gas {gas:.2f} brake {brake:.2f}"
