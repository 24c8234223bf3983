"""ViZDoom (vizdoom): every scenario, screen at 160x120; DoomTakeCover with the paper's one-number action.

The screen is rendered at 160x120 rather than the default 320x240: both are resized to 64x64, and the
smaller one runs about twice as fast (4,800 vs 2,400 steps/s a core on the development machine).

`VizdoomTakeCover-v1` keeps the paper's action: M sees one number (-1 left, 0 no-op, +1 right) and C's one
output is thresholded at +-1/3. Every other id (other scenarios, the `-MultiBinary-v1` twins, Deathmatch's
buttons-plus-deltas Dict) goes through the generic action codecs of envs/actions.py.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from worldmodels.envs.actions import Control, Controls
from worldmodels.envs.base import Adapter, require
from worldmodels.utils import atomic_write_text

NOOP, LEFT, RIGHT = 0, 1, 2  # VizdoomTakeCover-v1's Discrete(3): no buttons, MOVE_LEFT, MOVE_RIGHT


class VizdoomAdapter(Adapter):
    """Any ViZDoom id: registered on first use, rendered at 160x120, generic actions."""

    name = "vizdoom"
    make_kwargs = {"screen_resolution": "RES_160X120"}
    threaded_steps = (
        True  # the game runs in its own process; 16 envs step 1.85x faster on 4 threads
    )

    def __init__(self, env_id: str) -> None:
        require(
            "vizdoom.gymnasium_wrapper", env_id, "vizdoom", "doom"
        )  # registers the Vizdoom* ids
        super().__init__(env_id)

    def _make_raw(self, max_steps: int | None):
        env = super()._make_raw(max_steps)
        game = getattr(env.unwrapped, "game", None)
        home = _game_home()
        if game is not None and home is not None:
            # The engine writes _vizdoom.ini and a _vizdoom/ folder into its working directory: it is
            # started through a script that moves it into a cache folder first (paths it is given are
            # absolute), so nothing lands in the user's folder. The game itself is unchanged.
            game.set_vizdoom_path(str(home / "vizdoom"))
            game.set_doom_config_path(str(home / "_vizdoom.ini"))
        return env


@functools.cache
def _game_home() -> Path | None:
    """A per-user folder the ViZDoom engine runs in, with its launcher script (None: not writable, or
    not POSIX; the engine then runs where the user is, as ViZDoom does by default)."""
    import vizdoom

    engine = Path(vizdoom.__file__).parent / "vizdoom"
    if os.name != "posix" or not engine.exists():
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    # one folder per engine: two installs (venvs) must not run each other's engine through one launcher
    home = base / "worldmodels" / "vizdoom" / hashlib.sha256(str(engine).encode()).hexdigest()[:16]
    script = f'#!/bin/sh\ncd "{home}" && exec "{engine}" "$@"\n'
    try:
        home.mkdir(parents=True, exist_ok=True)
        launcher = home / "vizdoom"
        if not launcher.exists() or launcher.read_text() != script:
            atomic_write_text(launcher, script)
        launcher.chmod(0o755)
    except OSError:
        return None
    return home


class TakeCoverMultiBinaryAdapter(VizdoomAdapter):
    """TakeCover with MultiBinary(2) buttons: generic actions, but the reward is still +1 per tic alive."""

    reward_is_alive_bonus = True


class DoomAdapter(VizdoomAdapter):
    """VizdoomTakeCover-v1, the paper's DoomTakeCover."""

    name = "doom"
    reward_is_alive_bonus = True

    @property
    def action_dim(self) -> int:
        return 1  # the paper's M sees one number: -1 left, 0 no-op, +1 right

    @property
    def controller_outputs(self) -> int:
        return 1

    def encode_action(self, action: int) -> np.ndarray:
        return np.array([{NOOP: 0.0, LEFT: -1.0, RIGHT: 1.0}[int(action)]], np.float32)

    def controller_to_vector(self, a: torch.Tensor) -> torch.Tensor:
        """The paper: a < -1/3 -> left (-1), a > 1/3 -> right (+1), otherwise no-op (0)."""
        x = a[:, :1]
        return (x > 1 / 3).to(a.dtype) - (x < -1 / 3).to(a.dtype)

    def vector_to_action(self, v: np.ndarray) -> int:
        # the paper's thresholds, so C's own output (mdnrnn.action_input controller) maps as its vector does
        x = float(np.asarray(v).reshape(-1)[0])
        return LEFT if x < -1 / 3 else RIGHT if x > 1 / 3 else NOOP

    def controls(self) -> Controls:
        return Controls([0.0], [Control("ArrowLeft", "left", {0: -1.0}),
                                Control("ArrowRight", "right", {0: 1.0})])  # fmt: skip

    def describe_action(self, v: np.ndarray) -> str:
        return {NOOP: "none", LEFT: "left", RIGHT: "right"}[self.vector_to_action(v)]
