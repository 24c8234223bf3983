"""Rows made by `experiments.last_round` as one markdown table, each paired episode for episode with the base
run's score on the same seed list, and the spread of the rows' means (how far one C search lands from
another when only a seed changes).

    python -m experiments.rows_table --run-dirs runs/cr-levers/seed* \
        --base-eval runs/carracing-cpu/eval_seed99.json

A row's columns: its C's best periodic evaluation (dream, or real where `controller.select_real` chose), its
round's own real check (`iterate.eval_episodes` on the rounds' seeds), its score (mean +- std, s.e.), the
paired difference with the base (mean and s.e. of the per-episode differences), the share of episodes above
750, the median and the lowest episode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from experiments._common import parser, stats
from worldmodels.errors import WorldModelsError

THRESHOLD = 750.0
"""CarRacing's share of episodes above this (the issue's view of the spread)."""


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dirs", type=Path, nargs="+", required=True,
                    help="Rows made by experiments.last_round (each with row.json and its evaluation).")  # fmt: skip
    ap.add_argument("--base-eval", type=Path, required=True,
                    help="The base run's evaluation on the rows' seed list (an `evaluate --out` file).")  # fmt: skip
    return ap


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WorldModelsError(f"{path}: not a readable {what} ({type(e).__name__})") from None


def row_stats(row_dir: Path, base: dict[str, Any]) -> dict[str, Any]:
    """One row's numbers, its episodes paired with the base's (the same seeds, in order)."""
    row = _read(row_dir / "row.json", "row (run experiments.last_round first)")
    ev = _read(row_dir / f"eval_seed{row['seed']}.json", "evaluation")
    if (ev["seed"], ev["episodes"]) != (base["seed"], base["episodes"]):
        raise WorldModelsError(
            f"{row_dir}: scored on seed {ev['seed']} x {ev['episodes']}, the base on "
            f"{base['seed']} x {base['episodes']}: not paired"
        )
    r = np.asarray(ev["returns"], float)
    diff = stats(r - base["returns"])
    return {
        "row": row_dir.name, "eval": row["best_eval"], "eval_where": row["eval_where"],
        "check": row["round_check"], **stats(r), "diff": diff["mean"], "diff_stderr": diff["stderr"],
        "above": float(np.mean(r > THRESHOLD)), "min": float(r.min()),
    }  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| row | best periodic evaluation | round's check | real (mean +- std) | s.e. | vs the base, paired "
            f"| above {THRESHOLD:.0f} | median | lowest |\n|---|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    lines = [
        f"| {s['row']} | {s['eval']:.1f}{' (real)' if s['eval_where'] == 'real' else ''} | "
        f"{s['check']:.1f} | {s['mean']:.1f} +- {s['std']:.1f} | {s['stderr']:.1f} | "
        f"{s['diff']:+.1f} (s.e. {s['diff_stderr']:.1f}) | {s['above'] * 100:.0f} % | "
        f"{s['median']:.1f} | {s['min']:.1f} |"
        for s in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        base = _read(args.base_eval, "evaluation")
        rows = [row_stats(d, base) for d in args.run_dirs]
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"base: {np.mean(base['returns']):.1f} +- {np.std(base['returns']):.1f} over "
          f"{base['episodes']} episodes, seed {base['seed']}\n")  # fmt: skip
    print(table(rows))
    if len(rows) > 1:
        means = np.array([s["mean"] for s in rows])
        print(f"the rows' means: {means.mean():.1f} on average, std {means.std(ddof=1):.1f} across "
              f"{len(rows)} rows, from {means.min():.1f} to {means.max():.1f}")  # fmt: skip
        pick = max(rows, key=lambda s: s["check"])
        print(f"the row with the best round's check ({pick['check']:.1f}): {pick['row']}, "
              f"{pick['mean']:.1f} here")  # fmt: skip


if __name__ == "__main__":
    main()
