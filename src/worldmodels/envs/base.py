"""What every env adapter shares: pixel preprocessing to 64x64x3 uint8 and the adapter interface.

An adapter knows one family of environments: how to make it, how its actions are encoded for M, how C's
tanh outputs become env actions, and its random policy. Everything else in the library is env-agnostic.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmodels.config import FRAMES, CollectConfig, ControllerConfig
from worldmodels.envs.actions import KEYS, ActionCodec, Controls, codec_for
from worldmodels.envs.resize import area_resize
from worldmodels.errors import WorldModelsError, install_hint

FRAME = 64


def find_image(space: gym.Space) -> str | None:
    """Key of the HxWx3 uint8 image in a Dict observation space ('' for a plain Box), or None."""

    def is_image(s: gym.Space) -> bool:
        return (
            isinstance(s, gym.spaces.Box)
            and s.dtype == np.uint8
            and len(s.shape) == 3
            and s.shape[2] == 3
        )

    if is_image(space):
        return ""
    if isinstance(space, gym.spaces.Dict):
        for key in ("screen", "pixels", "image", "rgb"):
            if key in space.spaces and is_image(space.spaces[key]):
                return key
        for key, sub in space.spaces.items():
            if is_image(sub):
                return key
    return None


class PixelObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Crop rows [0:crop_bottom) of the image, resize to 64x64 (area interpolation), uint8 HxWx3."""

    def __init__(self, env: gym.Env, crop_bottom: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, crop_bottom=crop_bottom)
        gym.ObservationWrapper.__init__(self, env)
        key = find_image(env.observation_space)
        if key is None:
            raise WorldModelsError(
                f"env {env.spec.id if env.spec else env}: observation {env.observation_space} holds no "
                "HxWx3 uint8 image"
            )
        self._key = key
        self._crop = crop_bottom
        self.observation_space = gym.spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8)

    @property
    def crop_bottom(self) -> int | None:
        return self._crop

    def image(self, observation: Any) -> np.ndarray | None:
        """The raw image inside one of the wrapped env's observations (before crop and resize)."""
        return observation[self._key] if self._key else observation

    def observation(self, observation: Any) -> np.ndarray:
        return preprocess(self.image(observation), self._crop)


def preprocess(img: np.ndarray | None, crop_bottom: int | None = None) -> np.ndarray:
    """One frame to 64x64x3 uint8. A missing frame (some envs return none once the episode ends) is black."""
    if img is None:
        return np.zeros((FRAME, FRAME, 3), np.uint8)
    return preprocess_batch(img[None], crop_bottom)[0]


def preprocess_batch(frames: np.ndarray, crop_bottom: int | None = None) -> np.ndarray:
    """(T, H, W, 3) frames to (T, 64, 64, 3) uint8: crop rows [0:crop_bottom), then area resize."""
    if crop_bottom is not None:
        frames = frames[:, :crop_bottom]
    if frames.shape[1:3] != (FRAME, FRAME):
        return area_resize(*frames.shape[1:])(frames)
    return np.ascontiguousarray(frames, dtype=np.uint8)


class Policy:
    """A random policy: reset with a generator at the start of each episode, then called per step."""

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, obs: np.ndarray) -> Any:
        raise NotImplementedError


class HeldRandom(Policy):
    """A uniform random action held for a uniform number of frames in [hold_min, hold_max] (the paper's
    Doom data; any Discrete, MultiBinary, Box or Dict action space)."""

    def __init__(self, codec: ActionCodec, hold_min: int, hold_max: int) -> None:
        self.codec, self.lo, self.hi = codec, hold_min, hold_max

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.left = 0

    def __call__(self, obs: np.ndarray) -> Any:
        if self.left == 0:
            self.action = self.codec.sample(self.rng)
            self.left = int(self.rng.integers(self.lo, self.hi + 1))
        self.left -= 1
        return self.action


def require(module: str, env_id: str, what: str, extra: str) -> None:
    """Import an env's optional package, or fail in one line naming the extra that installs it (the
    package's own hint would name its own extras, not ours)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise WorldModelsError(f"--env {env_id}: needs {what}: {install_hint(extra)}") from None


class Adapter:
    """One family of environments. Subclasses set the fields and override what differs."""

    name = "generic"
    crop_bottom: int | None = None
    indicator_box: tuple[slice, slice] | None = None
    """Rows and columns of the 64x64 `full` frame that show the env's indicators (vae.indicator_weight)."""
    make_kwargs: dict[str, Any] = {}
    reward_is_alive_bonus = False
    """True when the reward is +1 per step alive, so the dream can score without a reward head."""
    threaded_steps = False
    """True when the env's step waits on another process without holding the GIL, so the batched agent
    steps its envs on threads (each env's episode is unchanged)."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        probe = self._make_raw(max_steps=None)
        try:
            self.action_space = probe.action_space
            if find_image(probe.observation_space) is None:
                raise WorldModelsError(
                    f"--env {env_id}: observation {probe.observation_space} holds no HxWx3 uint8 image"
                )
        finally:
            probe.close()
        try:
            self.codec = codec_for(self.action_space)
        except WorldModelsError as e:
            raise WorldModelsError(f"--env {env_id}: {e}") from None

    def _make_raw(self, max_steps: int | None) -> gym.Env:
        kwargs = dict(self.make_kwargs)
        if max_steps is not None:
            kwargs["max_episode_steps"] = max_steps
        try:
            return gym.make(self.env_id, **kwargs)
        except gym.error.Error as e:
            raise WorldModelsError(f"--env {self.env_id}: {str(e).splitlines()[0]}") from None
        except ImportError as e:
            raise WorldModelsError(f"--env {self.env_id}: missing package ({e})") from None

    def crop(self, frame: str) -> int | None:
        """Rows kept from the top of the screen for `env.frame` (None: all of them)."""
        if frame not in FRAMES:
            raise WorldModelsError(f"env.frame {frame!r}: must be one of {', '.join(FRAMES)}")
        return self.crop_bottom if frame == "paper" else None

    def make(self, max_steps: int, frame: str = "paper") -> gym.Env:
        """The real env: pixels at 64x64x3 uint8 (the part of the screen `frame` names, see env.frame), a
        step limit as truncation, 5-tuple steps."""
        return PixelObservation(self._make_raw(max_steps), self.crop(frame))

    # --- actions -------------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        """Size of the action vector M sees (and episodes store)."""
        return self.codec.dim

    @property
    def controller_outputs(self) -> int:
        return self.action_dim

    def encode_action(self, action: Any) -> np.ndarray:
        """Env action -> the float vector M sees (see envs/actions.py)."""
        return self.codec.encode(action)

    def with_controller(self, c: ControllerConfig) -> Adapter:
        """This adapter as a run's C acts through it (controller.max_gas, CarRacing's only setting here)."""
        if c.max_gas != 1.0:
            raise WorldModelsError(
                f"controller.max_gas {c.max_gas}: {self.env_id} has no gas (CarRacing only)"
            )
        return self

    def controller_to_vector(self, a: torch.Tensor) -> torch.Tensor:
        """C's tanh outputs (N, controller_outputs) -> the action vectors M sees (N, action_dim).
        The dream and the real-env agent both go through this one mapping."""
        return self.codec.from_controller(a)

    def m_action(self, a: torch.Tensor, action_input: str) -> torch.Tensor:
        """C's outputs (N, O) -> what M reads as the step's action: the env's action vector
        (`mdnrnn.action_input env`) or C's outputs themselves (`controller`, which needs O = action_dim)."""
        if action_input == "env":
            return self.controller_to_vector(a)
        if self.controller_outputs != self.action_dim:
            raise WorldModelsError(
                f"mdnrnn.action_input controller: C's {self.controller_outputs} output(s) are not "
                f"M's action vector ({self.action_dim} numbers) in {self.env_id}; use env"
            )
        return a.clone()

    def vector_to_action(self, v: np.ndarray) -> Any:
        """The inverse of encode_action: an action vector (action_dim,) -> the env's action."""
        return self.codec.decode(v)

    def random_policy(self, cfg: CollectConfig) -> Policy:
        return HeldRandom(self.codec, cfg.hold_min, cfg.hold_max)

    def controls(self) -> Controls:
        """Keys a person drives with (`worldmodels play`), as C's outputs: one per action or button, two
        per Box dimension, from 1, 2, 3, ... then the letters."""
        return self.codec.controls(list(KEYS))

    def describe_action(self, v: np.ndarray) -> str:
        """An action vector as a person reads it."""
        return " ".join(f"{x:+.2f}" for x in np.asarray(v, np.float32).reshape(-1))
