"""The paper's temperature experiment on a finished run: for each tau, a new C trained only inside the
dream of the run's final M, then scored inside the dream (at that tau) and in the real env.

    python -m experiments.temperature_sweep --run-dir runs/doom-cpu --out runs/doom-cpu-sweep \
        [--taus 0.1 0.5 1.0 1.15 1.3] [--population 64] [--trials 8] [--generations 20] [--episodes 100] \
        [--seed S] [--first-pass]

Each tau gets its own run directory OUT/tau_<tau> holding the run's exported agent (V, final M, dream start
latents; see `worldmodels export`) and its own C; every step resumes. Prints a markdown table and writes
OUT/table.json. "Cheating the world model" shows as a high dream score with a low real one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments._common import new_c_dir, parser, timed, train_seconds
from worldmodels.evaluate import evaluate_command, evaluation_is_current
from worldmodels.train.controller import controller_done, train_controller


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--run-dir", type=Path, required=True, help="A finished run (its final M is used)."
    )
    ap.add_argument("--out", type=Path, required=True, help="Folder for one run directory per tau.")
    ap.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.5, 1.0, 1.15, 1.3])
    ap.add_argument("--population", type=int, default=64, help="CMA-ES population.")
    ap.add_argument("--trials", type=int, default=8, help="Dream rollouts per candidate.")
    ap.add_argument("--generations", type=int, default=20, help="CMA-ES generations.")
    ap.add_argument(
        "--episodes", type=int, default=100, help="Real and dream episodes of each score."
    )
    ap.add_argument("--seed", type=int, default=None,
                    help="Seed of the scores' episodes (default: the run's evaluate.seed).")  # fmt: skip
    ap.add_argument("--first-pass", action="store_true",
                    help="Use the run's first M (before iterative training), not its final one.")  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    rows = []
    for tau in args.taus:
        d = args.out / f"tau_{tau:g}"
        cfg = new_c_dir(args.run_dir, d, {
            "controller.temperature": tau, "controller.population": args.population,
            "controller.trials": args.trials, "controller.generations": args.generations,
            "controller.eval_every": 5, "controller.eval_rollouts": 256,
            "evaluate.episodes": args.episodes,
            **({} if args.seed is None else {"evaluate.seed": args.seed}),
        }, first_pass=args.first_pass)  # fmt: skip
        if not controller_done(d, cfg):
            timed(d, lambda: train_controller(d, cfg, progress=not args.quiet))  # noqa: B023
        for where, name in (("dream", "eval_dream.json"), ("real", "eval.json")):
            if not evaluation_is_current(d / name, cfg):
                evaluate_command(d, cfg, "controller", where, progress=not args.quiet)
        dream = json.loads((d / "eval_dream.json").read_text())
        real = json.loads((d / "eval.json").read_text())
        rows.append({"tau": tau, "dream_mean": dream["mean"], "dream_std": dream["std"],
                     "real_mean": real["mean"], "real_std": real["std"], "real_stderr": real["stderr"],
                     "episodes": real["episodes"], "train_s": train_seconds(d)})  # fmt: skip
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| tau | score in the dream | score in the real env | n |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['tau']:g} | {r['dream_mean']:.1f} +- {r['dream_std']:.1f} | "
              f"{r['real_mean']:.1f} +- {r['real_std']:.1f} | {r['episodes']} |")  # fmt: skip


if __name__ == "__main__":
    main()
