"""The paper's own route as a comparison row: C trained with CMA-ES in the real env (not in the dream) on the
V and first M of a finished run, on the run's parallel backend (local processes, or a Ray cluster:
`ray start --head`, then `--backend ray --ray-address auto`). Measures the cost of a generation and what the
paper's budget (64 x 16 rollouts a generation, 1,800 generations, 64 cores) would take at that cost.

    python -m experiments.real_route --run-dir runs/carracing-cpu --out runs/carracing-real \
        [--population 16] [--trials 1] [--generations 10] [--episodes 100] [--seed 1234] \
        [--backend ray --ray-address auto] [--cores N]

OUT is a run directory holding the run's exported first-pass agent (V, first M; see `worldmodels export`)
and the new C; every step resumes, and a larger --generations goes on from the saved search. Prints the row
and writes OUT/real_route.json (and real_route_<generations>.json).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from experiments._common import new_c_dir, parser, timed, train_seconds
from worldmodels.config import save_config, with_overrides
from worldmodels.evaluate import evaluate_command, evaluation_is_current
from worldmodels.train.controller import controller_done, train_controller
from worldmodels.utils import read_metrics

PAPER = {"population": 64, "trials": 16, "generations": 1800, "cores": 64}


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--run-dir", type=Path, required=True, help="A run whose V and first M are trained."
    )
    ap.add_argument("--out", type=Path, required=True, help="Run directory for the real-env C.")
    ap.add_argument("--population", type=int, default=16, help="CMA-ES population.")
    ap.add_argument("--trials", type=int, default=1, help="Real episodes per candidate.")
    ap.add_argument("--generations", type=int, default=10, help="CMA-ES generations.")
    ap.add_argument("--eval-every", type=int, default=5,
                    help="Score the search's mean every N generations (C is the best of these).")  # fmt: skip
    ap.add_argument("--eval-rollouts", type=int, default=8, help="Real episodes of those scores.")
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes of the final score.")
    ap.add_argument("--seed", type=int, default=1234, help="Seed of the final score's episodes.")
    ap.add_argument(
        "--backend", default="local", choices=["local", "ray"], help="Real-env executor."
    )
    ap.add_argument("--ray-address", default="", help="Existing Ray cluster (e.g. auto).")
    ap.add_argument("--cores", type=int, default=os.cpu_count(),
                    help="Cores the rollouts ran on (for the per-core cost).")  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    d = args.out
    cfg = new_c_dir(args.run_dir, d, {
        "controller.where": "real", "controller.population": args.population,
        "controller.trials": args.trials, "controller.generations": args.generations,
        "controller.eval_every": args.eval_every, "controller.eval_rollouts": args.eval_rollouts,
        "evaluate.episodes": args.episodes, "evaluate.seed": args.seed,
        "parallel.backend": args.backend, "parallel.ray_address": args.ray_address,
        "parallel.workers": args.cores,
    }, first_pass=True)  # fmt: skip
    if args.generations > cfg.controller.generations:  # go on from the saved CMA-ES state
        cfg = with_overrides(cfg, {"controller.generations": args.generations})
        save_config(cfg, d / "config.json")
        for name in ("controller.pt", "eval.json"):
            (d / name).unlink(missing_ok=True)
    if not controller_done(d, cfg):
        timed(d, lambda: train_controller(d, cfg, progress=not args.quiet))
    if not evaluation_is_current(d / "eval.json", cfg):
        evaluate_command(d, cfg, "controller", "real", progress=not args.quiet)

    rows = [r for r in read_metrics(d) if r["stage"] == "train-controller"]
    steps_s = sum(r["perf/rollout_steps_per_s"] for r in rows) / len(rows)
    rollouts_s = sum(r["perf/rollouts_per_s"] for r in rows) / len(rows)
    mean_len = steps_s / rollouts_s
    per_core = steps_s / args.cores
    train_s = train_seconds(d)
    gen_s = train_s / cfg.controller.generations
    paper_gen_s = PAPER["population"] * PAPER["trials"] * mean_len / (per_core * PAPER["cores"])
    real = json.loads((d / "eval.json").read_text())
    row = {
        "population": cfg.controller.population, "trials": cfg.controller.trials,
        "generations": cfg.controller.generations, "train_s": train_s,
        "generation_s": gen_s, "rollout_steps_per_s": steps_s, "steps_per_s_per_core": per_core,
        "mean_rollout_length": mean_len, "cores": args.cores, "backend": cfg.parallel.backend,
        "real_mean": real["mean"], "real_std": real["std"], "real_stderr": real["stderr"],
        "episodes": real["episodes"], "eval_seed": real["seed"],
        "paper_generation_s_on_64_cores": paper_gen_s,
        "paper_1800_generations_days_on_64_cores": paper_gen_s * PAPER["generations"] / 86400,
    }  # fmt: skip
    for name in ("real_route.json", f"real_route_{cfg.controller.generations}.json"):
        (d / name).write_text(json.dumps(row, indent=2) + "\n")
    print("| route | C's search | wall | cost of a generation | real score (n) |")
    print("|---|---|---|---|---|")
    print(f"| real env, {row['backend']}, {args.cores} cores | {row['generations']} gens of "
          f"{row['population']} x {row['trials']} | {row['train_s']:.0f} s | {gen_s:.1f} s "
          f"({steps_s:.0f} steps/s, {per_core:.0f} a core) | {row['real_mean']:.1f} +- "
          f"{row['real_std']:.1f} ({row['episodes']}) |")  # fmt: skip
    print(f"paper's generation (64 x 16 rollouts of {mean_len:.0f} steps) on 64 cores at this cost: "
          f"{paper_gen_s:.0f} s; 1,800 generations: {row['paper_1800_generations_days_on_64_cores']:.1f}"
          " days")  # fmt: skip


if __name__ == "__main__":
    main()
