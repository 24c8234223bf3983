"""Environment adapters, chosen by env id: CarRacing, ViZDoom, or any Gymnasium pixel env."""

from __future__ import annotations

from functools import cache

import gymnasium as gym

from worldmodels.config import Config
from worldmodels.envs.base import FRAME, Adapter, Policy, preprocess

FAST_CARRACING = "worldmodels/CarRacing-v3"
"""gymnasium's CarRacing-v3, array for array, drawn several times faster (envs/fast_carracing.py)."""

if (
    FAST_CARRACING not in gym.registry
):  # the design's contract: importing worldmodels.envs registers it
    gym.register(
        FAST_CARRACING,
        entry_point="worldmodels.envs.fast_carracing:FastCarRacing",
        max_episode_steps=1000,
        reward_threshold=900,
    )

DREAMS = {"worldmodels/Dream-v0": {}, "worldmodels/DoomDream-v0": {"agent": "doom"},
          "worldmodels/CarRacingDream-v0": {"agent": "carracing"}}  # fmt: skip
"""M's dream as a Gymnasium env (worldmodels.api.dream_env): any agent (`agent=` a shipped name, an exported
folder or a run directory), or a shipped one. Nothing is loaded until an env is made."""
for _id, _kwargs in DREAMS.items():
    if _id not in gym.registry:
        gym.register(
            _id,
            entry_point="worldmodels.api:dream_env",
            vector_entry_point="worldmodels.api:dream_vector_env",
            kwargs=_kwargs,
        )

__all__ = [
    "DREAMS",
    "FAST_CARRACING",
    "FRAME",
    "Adapter",
    "Policy",
    "adapter_class",
    "adapter_for",
    "adapter_of",
    "dream_can_score",
    "preprocess",
]


def adapter_class(env_id: str) -> type[Adapter]:
    """The adapter class of an env id, without making the env (its class fields, such as
    reward_is_alive_bonus, can be read before anything runs)."""
    if env_id.startswith("CarRacing") or env_id.startswith("worldmodels/CarRacing"):
        from worldmodels.envs.carracing import CarRacingAdapter

        return CarRacingAdapter
    if env_id.startswith("Vizdoom"):
        from worldmodels.envs import doom

        if env_id == "VizdoomTakeCover-v1":
            return doom.DoomAdapter
        if env_id == "VizdoomTakeCover-MultiBinary-v1":
            return doom.TakeCoverMultiBinaryAdapter
        return doom.VizdoomAdapter
    return Adapter


def dream_can_score(cfg: Config) -> bool:
    """Whether M's dream can score a rollout: by survival (an env whose reward is +1 per step alive, like
    Doom) or with M's reward head. Read from the adapter's class: no env is made."""
    return adapter_class(cfg.env.id).reward_is_alive_bonus or cfg.mdnrnn.reward_head


@cache
def adapter_for(env_id: str) -> Adapter:
    """The adapter of an env id (cached: building one makes the env once to read its spaces)."""
    return adapter_class(env_id)(env_id)


def adapter_of(cfg: Config) -> Adapter:
    """The adapter a run's C acts through: its env's, with the run's controller settings that change how C's
    outputs become actions (controller.max_gas)."""
    return adapter_for(cfg.env.id).with_controller(cfg.controller)
