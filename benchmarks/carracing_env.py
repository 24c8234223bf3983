"""`worldmodels/CarRacing-v3` against gymnasium's `CarRacing-v3`: steps/s over whole episodes, side by side
in one process, on the same seeds and actions (Brownian, as collection drives), and a check that every
observation is the same.

    python benchmarks/carracing_env.py [--episodes 3]

Whole episodes matter: the first 50 steps of an episode zoom in from far away, when nearly every polygon is
on screen and culling saves little.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import CollectConfig  # noqa: E402
from worldmodels.envs import FAST_CARRACING  # noqa: E402
from worldmodels.envs.carracing import BrownianActions  # noqa: E402


def episode(env_id: str, seed: int) -> tuple[float, list[np.ndarray]]:
    env = gym.make(env_id)
    policy = BrownianActions(CollectConfig().brownian_dt)
    policy.reset(np.random.default_rng(seed))
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    t = time.perf_counter()  # steps only: reset builds the track, the same code in both
    while True:
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        frames.append(obs)
        if terminated or truncated:
            break
    wall = time.perf_counter() - t
    env.close()
    return wall, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=3)
    args = p.parse_args()
    walls = {"CarRacing-v3": 0.0, FAST_CARRACING: 0.0}
    steps, same = 0, True
    for seed in range(args.episodes):
        if seed % 2:  # alternate which runs first, so neither always gets the warmer caches
            w1, ours = episode(FAST_CARRACING, seed)
            w0, theirs = episode("CarRacing-v3", seed)
        else:
            w0, theirs = episode("CarRacing-v3", seed)
            w1, ours = episode(FAST_CARRACING, seed)
        walls["CarRacing-v3"] += w0
        walls[FAST_CARRACING] += w1
        steps += len(theirs) - 1
        same &= len(theirs) == len(ours) and all(np.array_equal(a, b) for a, b in zip(theirs, ours))
    official, fast = steps / walls["CarRacing-v3"], steps / walls[FAST_CARRACING]
    report("carracing_env", {
        "episodes": args.episodes, "steps": steps,
        "gymnasium_steps_per_s": round(official, 1), "fast_steps_per_s": round(fast, 1),
        "speedup": round(fast / official, 2), "identical_observations": bool(same),
    })  # fmt: skip


if __name__ == "__main__":
    main()
