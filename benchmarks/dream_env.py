"""The dream as a Gymnasium vector env against the internal batched dream CMA-ES uses, side by side.

    python benchmarks/dream_env.py [--agent doom] [--batch 1024] [--steps 200]

Both step the shipped agent's M with its C acting, `batch` rollouts at once for `steps` steps. The done head
is switched off (its bias lowered) in both, so every rollout lives the whole time and both run the same
batch throughout: the internal dream drops finished rollouts, the vector env restarts them. The vector env
gets C's actions from outside as numpy arrays (what an RL library does); the internal dream computes them
inside. Agent steps per second = batch x steps / seconds.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

import worldmodels as wm  # noqa: E402
from worldmodels.dream import DreamVectorEnv  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default="doom")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3, help="Best of this many timings of each.")
    args = p.parse_args()

    agent = wm.load(args.agent)
    base = agent._dream
    m = copy.deepcopy(base.m)
    if m.done_head:
        with torch.no_grad():
            m.head.bias[-1 - int(m.reward_head)] = -30.0  # done never fires
    dream = copy.copy(base)
    dream.m = m
    dream.spec = replace(base.spec, max_steps=args.steps)
    seeds = list(range(args.batch))
    params = np.stack([agent.controller.params] * args.batch)

    def internal() -> float:
        t = time.perf_counter()
        _, lengths = dream.rollout(params, seeds)
        assert (lengths == args.steps).all()
        return time.perf_counter() - t

    env = DreamVectorEnv(dream, args.batch)

    def vector() -> float:
        t = time.perf_counter()
        obs, _ = env.reset(seed=seeds)
        for _ in range(args.steps):
            obs, *_ = env.step(agent.controller.act(obs))
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"internal": [], "vector_env": []}
    for _ in range(args.repeats):  # interleaved, so a busy moment hits both
        times["internal"].append(internal())
        times["vector_env"].append(vector())
    rate = {k: args.batch * args.steps / min(v) for k, v in times.items()}
    report(
        "dream_env",
        {
            "agent": args.agent,
            "batch": args.batch,
            "steps": args.steps,
            "internal_steps_per_s": round(rate["internal"]),
            "vector_env_steps_per_s": round(rate["vector_env"]),
            "vector_env_over_internal": round(rate["vector_env"] / rate["internal"], 3),
            "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        },
    )


if __name__ == "__main__":
    main()
