"""Collection speed on DoomTakeCover: the raw env, one collection worker, two workers, side by side.

    python benchmarks/collect_throughput.py [--episodes 150]

Prints steps/s of each and the ratios the foundation issue asks for (one worker >= 80% of the raw env,
two workers >= 1.7x one worker).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import preset, with_overrides  # noqa: E402
from worldmodels.data.collect import collect  # noqa: E402
from worldmodels.envs import adapter_for  # noqa: E402


def raw_env_steps_per_s(episodes: int) -> float:
    """The bare env (gym.make, 160x120 screen, no preprocessing), random held actions."""
    import gymnasium as gym
    from vizdoom import gymnasium_wrapper  # noqa: F401

    env = gym.make("VizdoomTakeCover-v1", screen_resolution="RES_160X120", max_episode_steps=2100)
    rng = np.random.default_rng(0)
    steps, t = 0, time.perf_counter()
    for i in range(episodes):
        env.reset(seed=i)
        done = False
        while not done:
            _, _, te, tr, _ = env.step(int(rng.integers(3)))
            steps, done = steps + 1, te or tr
    return steps / (time.perf_counter() - t)


def collect_steps_per_s(episodes: int, workers: int) -> float:
    cfg = with_overrides(
        preset("doom"), {"collect.episodes": episodes, "parallel.workers": workers}
    )
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        out = collect(Path(d), cfg, progress=False)
        return out["collect/steps"] / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=150, help="Episodes per measurement.")
    args = p.parse_args()
    adapter_for("VizdoomTakeCover-v1")
    raw = raw_env_steps_per_s(args.episodes)
    one = collect_steps_per_s(args.episodes, 1)
    two = collect_steps_per_s(2 * args.episodes, 2)
    report("collect_throughput", {
        "raw_env_steps_per_s": round(raw), "collect_1_worker_steps_per_s": round(one),
        "collect_2_workers_steps_per_s": round(two), "one_worker_vs_raw": round(one / raw, 3),
        "two_vs_one_worker": round(two / one, 3), "episodes": args.episodes,
        "note": "collection includes process start-up, preprocessing to 64x64, compression and the atomic write",
    })  # fmt: skip


if __name__ == "__main__":
    main()
