"""Several Cs trained in one M's dream driving together: each step every C acts on the same [z, h] and the
car gets the mean (or median) of their actions. Does a vote of Cs lose fewer episodes than one C?

    python -m experiments.policy_ensemble --agent carracing --controllers runs/c4/controller.pt \
        runs/c2/controller.pt --sets 0 0,1,2 --z-scale 1 0 --seed 99 --episodes 100 --out runs/vote.json

The agent's own C is number 0, the `--controllers` (each trained on the agent's V and M, e.g. by
`worldmodels train-controller --pretrained carracing --seed S --run-dir D`) are 1, 2, ... Each `--sets`
entry is one row: the Cs that vote (comma-separated numbers). Each `--z-scale` S plays every set with z =
mu + S sigma eps, eps the episode's own draw: 1 is the paper's sample from V's posterior and `worldmodels
evaluate`'s agent (the row `0` at scale 1 gives evaluate's returns to the digit), 0 its mean, above 1 a
wider posterior (C trained in a dream at tau above 1 read more spread z than V's posterior gives).

Every row plays `--episodes` real episodes of evaluation seed list `--seed`, in the batches `evaluate` plays
them. Printed and written to `--out` (JSON): each row's mean, std, standard error, share above 750, the
difference paired with the first row, and the returns episode by episode. The Cs stay as trained: only how
their actions are combined at play changes, so this is C still trained only in the dream.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import worldmodels as wm
from experiments._common import parser, real_episode_flags, stats
from worldmodels.agent import BatchedAgent, load_controller
from worldmodels.config import with_overrides
from worldmodels.episodes import eval_seeds, play_batch, worker_envs
from worldmodels.errors import WorldModelsError
from worldmodels.models import controller as linear
from worldmodels.parallel import run_tasks
from worldmodels.utils import atomic_write_text
from worldmodels.workers import VMWeights, split_into_tasks


class _Scaled:
    """An episode's random stream with its normal draws scaled by `scale` (0: z is V's posterior mean)."""

    def __init__(self, rng: np.random.Generator, scale: float) -> None:
        self.rng, self.scale = rng, scale

    def standard_normal(self, n: int) -> np.ndarray:
        return self.rng.standard_normal(n) * self.scale


@dataclass(frozen=True)
class VoteTask:
    """The voting Cs' parameters (K, P), how they combine, the scale of z's noise, and the env seeds."""

    params: np.ndarray
    combine: str
    z_scale: float
    seeds: tuple[int, ...]

    def __repr__(self) -> str:
        return f"{len(self.params)} C(s) on {len(self.seeds)} episode(s) from seed {self.seeds[0]}"


def vote(
    params: torch.Tensor, x: torch.Tensor, out_dim: int, bias: bool, combine: str
) -> torch.Tensor:
    """Every C of `params` (K, P) on every row of `x` (N, in) -> their actions combined (N, out_dim). The
    median is the package's committee (`iterate.final_vote`): the K Cs end to end through `linear.act`."""
    if combine == "median":
        return linear.act(params.reshape(1, -1).expand(len(x), -1), x, out_dim, bias)
    acts = torch.stack([linear.act(p.expand(len(x), -1), x, out_dim, bias) for p in params])
    return acts.mean(0)


def _play(task: VoteTask, weights: VMWeights) -> list[float]:
    """The return of each episode of `task`, the Cs voting; runs in a worker."""
    models = weights.models()
    cfg, out_dim = models.cfg, models.adapter.controller_outputs
    params = torch.from_numpy(np.asarray(task.params, np.float32))

    class Voting(BatchedAgent):
        def start(self, slot: int, seed: int, p: np.ndarray) -> None:
            super().start(slot, seed, p)
            if task.z_scale != 1.0:
                self.rngs[slot] = _Scaled(self.rngs[slot], task.z_scale)  # type: ignore[arg-type,assignment]

    def controller(x: torch.Tensor) -> torch.Tensor:
        return vote(params, x, out_dim, cfg.controller.bias, task.combine)

    slots = min(cfg.parallel.envs, len(task.seeds))
    agent = Voting(models, slots, controller=controller)
    jobs = [(s, task.params[0]) for s in task.seeds]
    return [
        e["return"] for e in play_batch(worker_envs(cfg.env, slots), models.adapter, agent, jobs)
    ]


def parse_set(text: str, n: int) -> list[int]:
    """'0,2,3' -> [0, 2, 3], each a C's number below n."""
    try:
        picked = [int(t) for t in text.split(",")]
    except ValueError:
        raise WorldModelsError(f"--sets {text!r}: not comma-separated C numbers") from None
    bad = [i for i in picked if not 0 <= i < n]
    if bad or not picked:
        raise WorldModelsError(f"--sets {text!r}: C numbers run from 0 to {n - 1}")
    return picked


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--agent", required=True, help="A shipped agent's name, an exported folder or a run dir."
    )
    ap.add_argument("--controllers", type=Path, nargs="*", default=[],
                    help="More Cs (controller.pt) trained on the agent's V and M: numbers 1, 2, ...")  # fmt: skip
    ap.add_argument("--sets", nargs="+", default=["0"],
                    help="Rows: the Cs that vote, comma-separated numbers (0: the agent's own C).")  # fmt: skip
    ap.add_argument("--z-scale", type=float, nargs="+", default=[1.0],
                    help="z = mu + S sigma eps for each S: 1 the agent's sample, 0 V's mean.")  # fmt: skip
    ap.add_argument("--combine", choices=["mean", "median"], default="mean",
                    help="How the Cs' actions (after tanh) combine, output by output.")  # fmt: skip
    real_episode_flags(ap, "row")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    seeds = eval_seeds(args.seed, args.episodes)
    rows: list[dict[str, Any]] = []
    try:
        agent = wm.load(args.agent)
        cfg = with_overrides(agent.config, {"parallel.workers": args.workers})
        cs = [np.asarray(agent.controller.params, np.float32)]
        cs += [load_controller(p, cfg) for p in args.controllers]
        sets = [parse_set(s, len(cs)) for s in args.sets]
        even = [s for s, picked in zip(args.sets, sets, strict=True) if len(picked) % 2 == 0]
        if args.combine == "median" and even:
            raise WorldModelsError(f"--sets {even[0]!r}: a median needs an odd number of Cs")
        weights = VMWeights.of_run(agent.folder, cfg)
        for z in args.z_scale:
            for picked in sets:
                t0 = time.perf_counter()
                params = np.stack([cs[i] for i in picked])
                tasks = [VoteTask(params, args.combine, z, tuple(seeds[p]))
                         for p in split_into_tasks(len(seeds), cfg)]  # fmt: skip
                played = {s: r for task, res in run_tasks(_play, tasks, cfg.parallel, weights)
                          for s, r in zip(task.seeds, res, strict=True)}  # fmt: skip
                returns = [played[s] for s in seeds]
                row = {"cs": picked, "z_scale": z, "combine": args.combine, **stats(returns),
                       "above_750": float(np.mean(np.array(returns) > 750)),
                       "wall_s": time.perf_counter() - t0, "returns": returns}  # fmt: skip
                if rows:
                    d = stats(np.array(returns) - np.array(rows[0]["returns"]))
                    row["paired"], row["paired_stderr"] = d["mean"], d["stderr"]
                rows.append(row)
                vs = (
                    f", paired {row['paired']:+.1f} (s.e. {row['paired_stderr']:.1f})"
                    if "paired" in row
                    else ""
                )
                print(f"Cs {picked} z scale {z}: {row['mean']:.1f} +- {row['std']:.1f} (s.e. {row['stderr']:.1f}), "
                      f"{100 * row['above_750']:.0f} % above 750{vs}, {row['wall_s']:.0f} s", flush=True)  # fmt: skip
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    if args.out:
        table = {"agent": args.agent, "controllers": [str(p) for p in args.controllers],
                 "seed": args.seed, "episodes": args.episodes, "rows": rows}  # fmt: skip
        atomic_write_text(args.out, json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
