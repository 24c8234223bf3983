"""CarRacing agents scored with their gas held below a cap, C unchanged: does less speed save the Cs that cheat M?

    python -m experiments.gas_cap --agent carracing runs/cpu32 --caps 1.0 0.8 0.6 --seed 99 --episodes 100

The Cs that cheat M drive faster than the ones that drive well (docs/results.md, "What the searches that cheat
M do": gas 0.46-0.50 against 0.31-0.37, and off the road on 17-25 % of their real steps). Here each agent plays
`--episodes` real episodes of evaluation seed list `--seed` (the episodes `worldmodels evaluate` plays, in the
same batches) under `controller.max_gas` CAP (gas = CAP (a1 + 1) / 2; M reads the gas the car got): a cap of 1
is the agent as it is and gives evaluate's returns. This only asks whether capping
helps or hurts a C trained without a cap; a C trained under the cap is another row.

Each agent is a shipped agent's name, an exported folder or a run directory. Printed and written to
`--out` (JSON): each agent's mean, std, standard error, share above 750 and mean gas per cap, and the
returns episode by episode (for paired differences).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import worldmodels as wm
from experiments._common import parser, real_episode_flags, stats
from worldmodels.agent import BatchedAgent
from worldmodels.config import with_overrides
from worldmodels.episodes import eval_seeds, play_batch, worker_envs
from worldmodels.errors import WorldModelsError
from worldmodels.parallel import run_tasks
from worldmodels.utils import atomic_write_text
from worldmodels.workers import EpisodesTask, VMWeights, split_into_tasks


def _play(task: EpisodesTask, weights: VMWeights) -> list[tuple[float, int, float]]:
    """(return, length, mean gas) of each episode of `task`, as `play_task` plays them (the cap is in the
    weights' config); runs in a worker."""
    models = weights.models()
    gas: dict[int, list[float]] = {}
    episode: dict[int, int] = {}  # slot -> the seed it plays

    class Watched(BatchedAgent):
        def start(self, slot: int, seed: int, params: np.ndarray) -> None:
            super().start(slot, seed, params)
            episode[slot] = seed

        def act(self, obs: np.ndarray, rows: list[int], outputs: Any = None) -> list[Any]:
            actions = super().act(obs, rows, outputs)
            for j, i in enumerate(rows):
                gas.setdefault(episode[i], []).append(float(actions[j][1]))
            return actions

    slots = min(models.cfg.parallel.envs, len(task.seeds))
    envs = worker_envs(models.cfg.env, slots)
    eps = play_batch(envs, models.adapter, Watched(models, slots), task.jobs())
    return [
        (e["return"], e["length"], float(np.mean(gas[s])))
        for e, s in zip(eps, task.seeds, strict=True)
    ]


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--agent", nargs="+", required=True, help="Shipped agents, exported folders or run dirs."
    )
    ap.add_argument(
        "--caps",
        type=float,
        nargs="+",
        default=[1.0, 0.8, 0.6],
        help="Gas caps (controller.max_gas), each in (0, 1].",
    )
    real_episode_flags(ap, "agent and cap")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    seeds = eval_seeds(args.seed, args.episodes)
    rows = []
    try:
        for name in args.agent:
            agent = wm.load(name)
            parts = split_into_tasks(len(seeds), agent.config)
            tasks = [EpisodesTask(agent.controller.params, tuple(seeds[p])) for p in parts]
            for cap in args.caps:
                t0 = time.perf_counter()
                cfg = with_overrides(
                    agent.config, {"controller.max_gas": cap, "parallel.workers": args.workers}
                )
                weights = VMWeights.of_run(agent.folder, cfg)  # the agent's V and M, under the cap
                played = {s: r for task, res in run_tasks(_play, tasks, cfg.parallel, weights)
                          for s, r in zip(task.seeds, res, strict=True)}  # fmt: skip
                res = [played[s] for s in seeds]
                returns = [r for r, _, _ in res]
                row = {"agent": name, "cap": cap, **stats(returns),
                       "above_750": float(np.mean(np.array(returns) > 750)),
                       "gas": float(np.mean([g for _, _, g in res])), "wall_s": time.perf_counter() - t0,
                       "returns": returns}  # fmt: skip
                rows.append(row)
                print(f"{name} cap {cap:.2f}: {row['mean']:.1f} +- {row['std']:.1f} (s.e. {row['stderr']:.1f}), "
                      f"{100 * row['above_750']:.0f} % above 750, mean gas {row['gas']:.3f}, "
                      f"{row['wall_s']:.0f} s", flush=True)  # fmt: skip
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    if args.out:
        table = {"seed": args.seed, "episodes": args.episodes, "rows": rows}
        atomic_write_text(args.out, json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
