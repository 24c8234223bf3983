"""Rows made by `experiments.last_round` as one markdown table, each paired episode for episode with the base
run's score on the same seed list, and the spread of the rows' means (how far one C search lands from
another when only a seed changes).

    python -m experiments.rows_table --run-dirs runs/cr-levers/seed* \
        --base-eval runs/carracing-cpu/eval_seed99.json

With the base's run directory beside its evaluation (the `evaluate --out` file inside the run), the base
counts as one more search in the spread: how the best periodic evaluation and the round's check follow the
real score across searches, and what choosing the best of K searches by that check (iterate.final_searches)
would have scored, averaged over every K-subset.

A row's columns: its C's best periodic evaluation (dream, or real where `controller.select_real` chose), its
round's own real check (`iterate.eval_episodes` on the rounds' seeds), its score (mean +- std, s.e.), the
paired difference with the base (mean and s.e. of the per-episode differences), the share of episodes above
750, the median and the lowest episode.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from experiments._common import parser, stats
from worldmodels.config import load_config
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir
from worldmodels.utils import read_header

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


def base_search(base_eval: Path, base: dict[str, Any]) -> dict[str, Any] | None:
    """The base run's own C as one more search (its best periodic evaluation, its round's check, its
    score), when `base_eval` lies in a run directory; None for a lone evaluation file."""
    run = RunDir(base_eval.parent)
    if not run.config.exists():
        return None
    agent = run.agent_round(load_config(run.config))
    check = _read(agent.eval, "round check")["mean"] if agent.eval.exists() else None
    return {"row": "base", "eval": read_header(agent.controller, "controller")["eval_return"],
            "check": check, "mean": float(np.mean(base["returns"]))}  # fmt: skip


def spread(searches: list[dict[str, Any]]) -> list[str]:
    """The searches' real means: their spread, how the dream's and the round's check follow them, and the
    best of K by the check averaged over every K-subset."""
    means = np.array([s["mean"] for s in searches])
    lines = [f"the {len(searches)} searches' means: {means.mean():.1f} on average, std "
             f"{means.std(ddof=1):.1f}, median {np.median(means):.1f}, from {means.min():.1f} to "
             f"{means.max():.1f}"]  # fmt: skip
    if len(searches) > 2 and all(s["check"] is not None for s in searches):
        for key, what in (("eval", "best periodic evaluation"), ("check", "round's check")):
            r = np.corrcoef([s[key] for s in searches], means)[0, 1]
            lines.append(f"correlation of the {what} with the real mean: {r:.3f}")
        for k in range(2, min(4, len(searches) - 1) + 1):
            picks = [means[max(c, key=lambda i: searches[i]["check"])]
                     for c in itertools.combinations(range(len(searches)), k)]  # fmt: skip
            lines.append(f"the best of {k} by the round's check, over all {len(picks)} subsets: "
                         f"{np.mean(picks):.1f} on average, lowest {min(picks):.1f}")  # fmt: skip
    return lines


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
        own = base_search(args.base_eval, base)
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    b = stats(base["returns"])
    print(f"base: {b['mean']:.1f} +- {b['std']:.1f} over {base['episodes']} episodes, "
          f"seed {base['seed']}\n")  # fmt: skip
    print(table(rows))
    searches = ([own] if own else []) + rows
    if len(searches) > 1:
        print("\n".join(spread(searches)))
    if len(rows) > 1:
        pick = max(rows, key=lambda s: s["check"])
        print(f"the row with the best round's check ({pick['check']:.1f}): {pick['row']}, "
              f"{pick['mean']:.1f} here")  # fmt: skip


if __name__ == "__main__":
    main()
