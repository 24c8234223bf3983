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
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from experiments._common import parser, stats


def _play(folder: str, cap: float, seeds: tuple[int, ...]) -> list[tuple[float, int, float]]:
    """(return, length, mean gas) of each episode, C's gas capped; runs in a worker process."""
    import torch

    torch.set_num_threads(1)
    from worldmodels.agent import BatchedAgent, load_controller
    from worldmodels.config import load_config, with_overrides
    from worldmodels.episodes import play_batch, worker_envs
    from worldmodels.rundir import RunDir
    from worldmodels.workers import VMWeights

    cfg = with_overrides(load_config(Path(folder) / "config.json"), {"controller.max_gas": cap})
    m_path, c_path = RunDir(Path(folder)).agent(
        cfg
    )  # a run's agent: its last (or chosen) round's C and M
    params = load_controller(c_path, cfg)
    models = VMWeights.of_run(Path(folder), cfg, m_path).models()
    gas: dict[int, list[float]] = {}

    class Watched(BatchedAgent):
        def act(self, obs: np.ndarray, rows: list[int], outputs: Any = None) -> list[Any]:
            actions = super().act(obs, rows, outputs)
            for j, i in enumerate(rows):
                gas.setdefault(self.episode[i], []).append(float(actions[j][1]))
            return actions

        def start(self, slot: int, seed: int, p: np.ndarray) -> None:
            super().start(slot, seed, p)
            self.episode = getattr(self, "episode", {})
            self.episode[slot] = seed

    slots = min(cfg.parallel.envs, len(seeds))
    jobs = [(s, params) for s in seeds]
    eps = play_batch(worker_envs(cfg.env, slots), models.adapter, Watched(models, slots), jobs)
    return [
        (e["return"], e["length"], float(np.mean(gas[s]))) for e, s in zip(eps, seeds, strict=True)
    ]


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--agent", nargs="+", required=True, help="Shipped agents, exported folders or run dirs."
    )
    ap.add_argument(
        "--caps", type=float, nargs="+", default=[1.0, 0.8, 0.6], help="Gas caps, each in (0, 1]."
    )
    ap.add_argument(
        "--seed", type=int, default=99, help="Evaluation seed list (99: the tuning seeds)."
    )
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes per agent and cap.")
    ap.add_argument("--workers", type=int, default=2, help="Worker processes.")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the table.")
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = build_parser()
    args = ap.parse_args(argv)
    if any(not 0 < c <= 1 for c in args.caps):
        ap.error(f"--caps {args.caps}: each must be in (0, 1]")
    import worldmodels as wm
    from worldmodels.episodes import eval_seeds
    from worldmodels.workers import split_into_tasks

    seeds = eval_seeds(args.seed, args.episodes)
    rows = []
    ctx = get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        for name in args.agent:
            agent = wm.load(name)
            folder, cfg = str(agent.folder), agent.config
            parts = split_into_tasks(len(seeds), cfg)
            for cap in args.caps:
                t0 = time.perf_counter()
                futures = [pool.submit(_play, folder, cap, tuple(seeds[p])) for p in parts]
                res = [r for f in futures for r in f.result()]
                returns = [r for r, _, _ in res]
                row = {"agent": name, "cap": cap, **stats(returns),
                       "above_750": float(np.mean(np.array(returns) > 750)),
                       "gas": float(np.mean([g for _, _, g in res])), "wall_s": time.perf_counter() - t0,
                       "returns": returns}  # fmt: skip
                rows.append(row)
                print(f"{name} cap {cap:.2f}: {row['mean']:.1f} +- {row['std']:.1f} (s.e. {row['stderr']:.1f}), "
                      f"{100 * row['above_750']:.0f} % above 750, mean gas {row['gas']:.3f}, "
                      f"{row['wall_s']:.0f} s", flush=True)  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"seed": args.seed, "episodes": args.episodes, "rows": rows}, indent=1)
        )
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
