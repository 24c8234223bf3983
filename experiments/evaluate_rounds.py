"""Score every round of iterative training on the same real episodes: is the last round the best one?

    python -m experiments.evaluate_rounds --run-dir runs/doom-cpu [--rounds 3 4 5] [--episodes 100] \
        [--seeds 1234 7]

For each round R (round 0: the first M and C, before iterative training) and each seed, round R's M and C
play the same real episodes (the seed fixes every episode's env seed, as `worldmodels evaluate --seed`
does). Results go to RUN_DIR/rounds/R/eval_<seed>_<n>.json (an existing file is reused) and a markdown
table is printed. Picking a round by one seed's episodes and
reporting another seed's keeps the choice off the reported number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import load_config
from worldmodels.evaluate import evaluate_real
from worldmodels.rundir import RunDir
from worldmodels.utils import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dir", type=Path, required=True, help="A run with finished rounds.")
    ap.add_argument(
        "--rounds",
        type=int,
        nargs="+",
        help="Rounds to score (default: 0, the first C, and every finished round).",
    )
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes per round and seed.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 7], help="Evaluation seeds.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = RunDir(args.run_dir)
    cfg = load_config(run.config)
    rounds = args.rounds or [0] + sorted(
        int(d.name)
        for d in run.rounds.iterdir()
        if run.round(int(d.name)).is_done()
        if d.name.isdigit()
    )
    table = {}
    for r in rounds:
        this = run.round(r)
        d = this.records
        for seed in args.seeds:
            path = d / f"eval_{seed}_{args.episodes}.json"
            if not path.exists():
                t = time.time()
                params = load_controller(this.controller, cfg)
                res = evaluate_real(args.run_dir, cfg, params, args.episodes, seed,
                                    progress=not args.quiet, mdnrnn=this.mdnrnn)  # fmt: skip
                d.mkdir(parents=True, exist_ok=True)
                res["round"], res["wall_s"] = r, time.time() - t
                atomic_write_text(path, json.dumps(res, indent=2))
            table[r, seed] = json.loads(path.read_text())
    print(
        "| round | "
        + " | ".join(f"seed {s} (n = {args.episodes})" for s in args.seeds)
        + " | mean |"
    )
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for r in rounds:
        cells = [f"{table[r, s]['mean']:.1f} +- {table[r, s]['std']:.1f}" for s in args.seeds]
        both = np.mean([table[r, s]["mean"] for s in args.seeds])
        print(f"| {r} | " + " | ".join(cells) + f" | {both:.1f} |")


if __name__ == "__main__":
    main()
