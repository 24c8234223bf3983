"""How many fireballs end a DoomTakeCover episode? Health as the game reports it, never shown to V or M.

    python -m experiments.doom_hits [--episodes 100] [--seed 0]

Random-policy episodes of VizdoomTakeCover-v1 in the env and with the random policy `worldmodels collect`
uses (the adapter's env, 160x120 and the 2,100-step limit; uniform action held 1-10 frames), reading the
game's HEALTH after every step. A hit is a drop in health before the last step (the fatal hit's damage is
not read). Printed: the share of deaths at the first, second, ... hit and the damages seen. M's done head has
only the frames: where one hit kills at full health and another does not, it cannot tell which.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from experiments._common import parser
from worldmodels.config import CollectConfig
from worldmodels.envs import adapter_for


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--episodes", type=int, default=100, help="Random-policy episodes.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the env and of the policy.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vizdoom import GameVariable

    adapter = adapter_for("VizdoomTakeCover-v1")
    env = adapter.make(max_steps=2100)
    policy = adapter.random_policy(CollectConfig())
    rng = np.random.default_rng(args.seed)
    hits_to_die, damages, lengths = Counter(), Counter(), []
    for e in range(args.episodes):
        obs, _ = env.reset(seed=args.seed * 100_000 + e)
        policy.reset(rng)
        health = [env.unwrapped.game.get_game_variable(GameVariable.HEALTH)]
        steps, seen = 0, 0
        while True:
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            steps += 1
            if terminated or truncated:
                break
            health.append(env.unwrapped.game.get_game_variable(GameVariable.HEALTH))
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
