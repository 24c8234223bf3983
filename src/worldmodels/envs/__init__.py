"""Environment adapters, chosen by env id: CarRacing, ViZDoom, or any Gymnasium pixel env."""

from __future__ import annotations

from functools import cache

from worldmodels.envs.base import FRAME, Adapter, Policy, preprocess

__all__ = ["FRAME", "Adapter", "Policy", "adapter_for", "preprocess"]


@cache
def adapter_for(env_id: str) -> Adapter:
    """The adapter of an env id (cached: building one makes the env once to read its spaces)."""
    if env_id.startswith("CarRacing"):
        from worldmodels.envs.carracing import CarRacingAdapter

        return CarRacingAdapter(env_id)
    if env_id.startswith("Vizdoom"):
        try:
            from worldmodels.envs.doom import DoomAdapter
        except ImportError:
            from worldmodels.errors import WorldModelsError

            raise WorldModelsError(
                f"--env {env_id}: needs vizdoom: pip install 'worldmodels[doom]'"
            ) from None
        return DoomAdapter(env_id)
    return Adapter(env_id)
