"""One linear C whose weights are the mean of several Cs' trained in the same M's dream.

    python -m experiments.average_cs --run-dirs RUN_DIR [RUN_DIR ...] --out runs/avg

Each RUN_DIR holds a finished C (controller.pt) for the same V and M, e.g. copies of a shipped agent with
another `seed` in config.json and `worldmodels train-controller`. OUT gets the first one's config, V, M and
dream starts and a controller.pt with the mean weights, ready for `worldmodels evaluate --run-dir OUT`.
C is linear, so the mean C's pre-activation is the mean of theirs: a vote of the Cs in one linear C.
Printed: each C's weight norm and the cosine between every two.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from experiments._common import parser
from worldmodels.agent import load_controller, save_controller
from worldmodels.config import load_config


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--out", type=Path, required=True, help="The new run directory.")
    ap.add_argument("--run-dirs", type=Path, nargs="+", required=True,
                    help="Run directories with finished Cs.")  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.run_dirs[0] / "config.json")
    cs = [load_controller(d / "controller.pt", cfg) for d in args.run_dirs]
    for d, c in zip(args.run_dirs, cs, strict=True):
        print(f"{d}: |w| = {np.linalg.norm(c):.3f}")
    for i in range(len(cs)):
        for j in range(i + 1, len(cs)):
            cos = cs[i] @ cs[j] / (np.linalg.norm(cs[i]) * np.linalg.norm(cs[j]))
            print(f"cosine {args.run_dirs[i].name} ~ {args.run_dirs[j].name}: {cos:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "vae.pt", "mdnrnn.pt", "latents_starts.npz"):
        if (args.run_dirs[0] / name).exists():
            shutil.copy(args.run_dirs[0] / name, args.out / name)
    mean = np.mean(cs, axis=0).astype(np.float32)
    header = {
        "finished": True,
        "averaged": [str(d) for d in args.run_dirs],
        "config": cfg.to_dict(),
    }
    save_controller(args.out / "controller.pt", mean, header)
    print(
        f"{args.out / 'controller.pt'}: the mean of {len(cs)} Cs, |w| = {np.linalg.norm(mean):.3f}"
    )


if __name__ == "__main__":
    main()
