"""Several runs' Cs scored in the dreams of several Ms, beside their real scores: which M's dream ranks the Cs
as the real env does?

    python -m experiments.cross_m --run-dirs runs/carracing-cpu runs/cr-levers/seed* \
        --mdnrnns runs/carracing-cpu/rounds/{5,6}/mdnrnn.pt --seed 99 --rollouts 128

Each run's agent C (for the same V) is scored over the same `--rollouts` dream rollouts (seeds 10,000 on)
in each M's dream, at the agent's temperature, from the first run's start frames; its real score is the run's
eval_seed<S>.json (`last_round`'s, or `worldmodels evaluate --seed S --out RUN/eval_seedS.json`). Printed:
a table, and for each M the correlation of its dream scores with the real ones. `--out`: the same as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import load_config, round_config
from worldmodels.dream import build_dream
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir
from worldmodels.utils import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dirs", type=Path, nargs="+", required=True,
                    help="Finished runs with the same V, each scored on --seed.")  # fmt: skip
    ap.add_argument("--mdnrnns", type=Path, nargs="+", required=True, help="mdnrnn.pt files.")
    ap.add_argument("--seed", type=int, required=True, help="The real scores' seed list.")
    ap.add_argument("--rollouts", type=int, default=128, help="Dream rollouts a C and M.")
    ap.add_argument("--out", type=Path, help="Write the table as JSON here too.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        cfg = round_config(load_config(RunDir(args.run_dirs[0]).config))
        params, real = [], []
        for d in args.run_dirs:
            scored = d / f"eval_seed{args.seed}.json"
            if not scored.exists():
                raise WorldModelsError(f"{scored}: no real score on seed {args.seed}")
            real.append(json.loads(scored.read_text())["mean"])
            run_cfg = load_config(RunDir(d).config)
            params.append(load_controller(RunDir(d).agent(run_cfg)[1], cfg))
        n = args.rollouts
        every = np.repeat(np.stack(params), n, axis=0)
        seeds = [10_000 + i for _ in params for i in range(n)]
        dream_scores = {}
        for m in args.mdnrnns:
            dream = build_dream(args.run_dirs[0], cfg, device="cpu", mdnrnn=m)
            returns, _ = dream.rollout(every, seeds)
            dream_scores[str(m)] = returns.reshape(len(params), n).mean(1).tolist()
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    names = [str(m) for m in args.mdnrnns]
    print("| C | real | " + " | ".join(f"dream of {m}" for m in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for i, d in enumerate(args.run_dirs):
        cells = " | ".join(f"{dream_scores[m][i]:.1f}" for m in names)
        print(f"| {d} | {real[i]:.1f} | {cells} |")
    for m in names:
        varies = np.ptp(dream_scores[m]) > 0 and np.ptp(real) > 0
        corr = f"{np.corrcoef(dream_scores[m], real)[0, 1]:.3f}" if varies else "none (no spread)"
        print(f"{m}: dream vs real correlation {corr}")
    if args.out:
        table = {"runs": [str(d) for d in args.run_dirs], "real": real, "dream": dream_scores,
                 "rollouts": n, "seed": args.seed, "temperature": cfg.controller.temperature}  # fmt: skip
        atomic_write_text(args.out, json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
