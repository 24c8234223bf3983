"""How many fireballs end a DoomTakeCover episode? Health as the game reports it, never shown to V or M.

    python experiments/doom_hits.py [--episodes 100] [--seed 0]

Random-policy episodes (uniform action held 1-10 frames, as `worldmodels collect` plays) of
VizdoomTakeCover-v1 at 160x120, reading the HEALTH game variable after every step. A hit is a drop in
health before the last step (the last observation's game variables read 0, so the fatal hit's damage is not
seen). Printed: the share of deaths at the first, second, ... hit and the damages seen. M's done head has
only the frames: where one hit kills at full health and another does not, it cannot tell which.
"""

from __future__ import annotations

import argparse
from collections import Counter

import gymnasium as gym
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=100, help="Random-policy episodes.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the env and of the policy.")
    args = ap.parse_args()
    from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom* ids)

    env = gym.make("VizdoomTakeCover-v1", screen_resolution="RES_160X120", max_episode_steps=2100)
    rng = np.random.default_rng(args.seed)
    hits_to_die, damages, lengths = Counter(), Counter(), []
    for e in range(args.episodes):
        obs, _ = env.reset(seed=args.seed * 100_000 + e)
        health, steps, hold, action, seen = [float(obs["gamevariables"][0])], 0, 0, 0, 0
        while True:
            if hold == 0:
                action, hold = int(rng.integers(3)), int(rng.integers(1, 11))
            obs, _, terminated, truncated, _ = env.step(action)
            hold, steps = hold - 1, steps + 1
            if terminated or truncated:
                break
            health.append(float(obs["gamevariables"][0]))
            if health[-1] < health[-2]:
                seen += 1
                damages[round(health[-2] - health[-1])] += 1
        lengths.append(steps)
        if terminated:
            hits_to_die[seen + 1] += 1
    env.close()
    died = sum(hits_to_die.values())
    print(f"{args.episodes} episodes, mean length {np.mean(lengths):.1f}, {died} deaths")
    for k in sorted(hits_to_die):
        print(f"  died at hit {k}: {hits_to_die[k]} ({hits_to_die[k] / died:.0%})")
    print("  damage of the hits survived:", dict(sorted(damages.items())))


if __name__ == "__main__":
    main()
