"""A round added to a finished run whose real episodes are collected by several Cs, not by the last C alone:
does M, shown what other searches' Cs really do, stop rewarding the ones that cheat it?

    python -m experiments.mixed_collection --run-dir runs/carracing-cpu --out runs/cr-levers/mixed \
        --controllers runs/carracing-cpu/rounds/6/controller.pt runs/cr-levers/seed*/rounds/6/controller.pt \
        --set iterate.final_searches=4 --seed 99 --episodes 100

OUT is a copy of RUN_DIR with one more round (`last_round`'s copy, `iterate.rounds` + 1, and the `--set`
overrides). The new round's `iterate.episodes` episodes are split as evenly as can be among the given Cs in
their order (each played with the last round's M and V, with `iterate.explore`, on the seeds the round's own
collection would have used); the round then goes on as any round does (encode, M from the last round's
weights on every episode so far, its C), and the new agent is scored on a tuning seed list. Every C must fit
the run's C. OUT/mixed_collection.json records the Cs and each one's episodes and mean return. Resumable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments import last_round
from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import load_config, with_overrides
from worldmodels.data.storage import episode_path, load_episode
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir
from worldmodels.train.iterate import record_agent_episodes, round_episodes
from worldmodels.utils import atomic_write_text

RECORD = "mixed_collection.json"


def build_parser() -> argparse.ArgumentParser:
    ap = last_round.row_flags(parser(__doc__, __name__))
    ap.add_argument("--controllers", type=Path, nargs="+", required=True,
                    help="controller.pt files of Cs for the run's V and M (e.g. the last C's searches).")  # fmt: skip
    return ap


def collect_mixed(out: Path, controllers: list[Path], progress: bool) -> dict:
    """The new round's episodes, each C its share (the ones already there kept)."""
    run = RunDir(out)
    cfg = load_config(run.config)
    r = cfg.iterate.rounds
    indices = list(round_episodes(cfg, r))
    prev_m = run.round(r - 1).mdnrnn
    record = {"round": r, "controllers": []}
    # consecutive shares, the first len(indices) % len(controllers) one episode longer
    for path, share in zip(controllers, np.array_split(indices, len(controllers))):
        params = load_controller(path, cfg)
        these = [int(i) for i in share]
        record_agent_episodes(out, cfg, these, prev_m, params, progress,
                              f"round {r}: collect with {path.parent.name}")  # fmt: skip
        returns = [float(load_episode(episode_path(run.episodes, i), ("reward",))["reward"].sum())
                   for i in these]  # fmt: skip
        record["controllers"].append(
            {"controller": str(path), "episodes": these, "mean_return": float(np.mean(returns))}
        )
    return record


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if missing := [str(p) for p in args.controllers if not p.is_file()]:
        raise SystemExit(f"error: no such controller: {', '.join(missing)}")
    try:
        overrides = last_round.parse_overrides(args.set)
        if not (args.out / "last_round.json").exists():
            base = load_config(RunDir(args.run_dir).config)
            overrides["iterate.rounds"] = base.iterate.rounds + 1
            new = with_overrides(base, overrides)
            if len(args.controllers) > new.iterate.episodes:
                raise WorldModelsError(
                    f"{len(args.controllers)} controllers for {new.iterate.episodes} episodes: "
                    "give at most one per episode"
                )
            for path in args.controllers:  # each must be a finished C of the run's shape
                load_controller(path, new)
            last_round.make_copy(args.run_dir, args.out, overrides, False)
        if not (args.out / RECORD).exists():
            record = collect_mixed(args.out, args.controllers, not args.quiet)
            atomic_write_text(args.out / RECORD, json.dumps(record, indent=2) + "\n")
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    # the round's collection finds its episodes there; the rest is last_round's (M, C, the score, row.json)
    rest = ["--run-dir", str(args.run_dir), "--out", str(args.out), "--seed", str(args.seed),
            "--episodes", str(args.episodes), *(["--quiet"] if args.quiet else [])]  # fmt: skip
    last_round.main(rest)


if __name__ == "__main__":
    main()
