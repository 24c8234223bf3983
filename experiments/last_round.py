"""A finished run's last round with other settings, as a row beside the run: a copy of the run (its episode
and latent files hard-linked, the rest copied) whose config gets `--set` overrides, then either its last
round's C trained again under them or, with a larger `iterate.rounds`, further rounds; the new agent is then
scored on a tuning seed list.

    python -m experiments.last_round --run-dir runs/carracing-cpu --out runs/cr-levers/gen80 \
        --set iterate.final_generations=80 --continue-search --seed 99 --episodes 100
    python -m experiments.last_round --run-dir runs/carracing-cpu --out runs/cr-levers/rounds8 \
        --set iterate.rounds=8 --seed 99 --episodes 100
    python -m experiments.last_round --run-dir runs/carracing-cpu --out runs/cr-levers/tau115 \
        --set controller.temperature=1.15 --from-round 1 --seed 99 --episodes 100

What the overrides change reaches only what is trained again: the last round's C (its C settings, the
`iterate.final_*` ones, `iterate.warm_start` from the previous round's C), the new rounds, or with
`--from-round R` rounds R..N whole (their episodes collected again, from round R-1's C on, their M and C
trained again). Rounds before
were made with the base run's settings, whatever the copy's config.json now says; OUT/last_round.json keeps
the base, the overrides and that scope. `--continue-search` keeps the last C's CMA-ES state, so a longer
search (more generations, nothing else changed) goes on from where the base's stopped: the same search as one
of that length from the start. Every step resumes. Writes OUT/eval_seed<S>.json and OUT/row.json (the
agent's score there, its best dream evaluation, the round's own real check, the training's wall seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from experiments._common import parser, timed, train_seconds
from worldmodels.config import leaf_fields, load_config, parse_value, save_config, with_overrides
from worldmodels.data.starts import STARTS_IN_LATENTS
from worldmodels.data.storage import episode_path
from worldmodels.errors import WorldModelsError
from worldmodels.evaluate import evaluate_command, evaluation_is_current
from worldmodels.rundir import EPISODES, LATENTS, RunDir
from worldmodels.train.iterate import iterate, iterate_done, round_episodes
from worldmodels.utils import atomic_write_text, read_header

SEARCH_LENGTH = {"iterate.final_generations", "iterate.generations", "controller.generations"}
"""The only settings `--continue-search` allows to change: a longer search is the same search, continued."""


def row_flags(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of a row beside a finished run (this module's and experiments built on it)."""
    ap.add_argument("--run-dir", type=Path, required=True,
                    help="A finished run with iterative training (read only).")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="The copy's run directory (the row).")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="A setting of the copy, e.g. iterate.final_generations=80 (repeatable).")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes of the score.")
    ap.add_argument("--seed", type=int, required=True,
                    help="Evaluation seed list of the score: a tuning seed, not the one you report.")  # fmt: skip
    return ap


def build_parser() -> argparse.ArgumentParser:
    ap = row_flags(parser(__doc__, __name__))
    ap.add_argument("--continue-search", action="store_true",
                    help="Keep the last C's CMA-ES state (only with a longer search, no --from-round: "
                    + ", ".join(sorted(SEARCH_LENGTH)) + ").")  # fmt: skip
    ap.add_argument("--from-round", type=int, default=0, metavar="R",
                    help="Train rounds R..N again whole (collect, M, C) under the overrides; 0: only "
                    "the last C, or the added rounds.")  # fmt: skip
    return ap


def parse_overrides(items: list[str]) -> dict[str, object]:
    """KEY=VALUE strings as typed settings; a one-line error for an unknown key or a bad value."""
    types = {name: tp for name, tp, _ in leaf_fields()}
    out: dict[str, object] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or key not in types:
            raise WorldModelsError(f"--set {item!r}: expected KEY=VALUE with a known setting")
        out[key] = parse_value(key, types[key], text)
    return out


def _link_or_copy(src: str, dst: str) -> None:
    parts = Path(src).parts
    if EPISODES in parts or LATENTS in parts:
        os.link(
            src, dst
        )  # never written in place: every write goes to a temporary name, then renamed
    else:
        shutil.copy2(src, dst)


def make_copy(
    base: Path, out: Path, overrides: dict[str, object], keep_search: bool, from_round: int = 0
) -> str:
    """OUT as BASE with OVERRIDES in its config and, unless rounds are added, its last round's C removed
    (with FROM_ROUND R > 0: rounds R.. removed whole, their episodes and latents too). Returns what is
    trained again ("last C" or "rounds R..N")."""
    cfg = load_config(RunDir(base).config)
    if not iterate_done(base, cfg) or cfg.iterate.rounds == 0:
        raise WorldModelsError(f"{base}: not a finished run with iterative training")
    new = with_overrides(cfg, overrides)
    rounds = new.iterate.rounds
    if rounds < cfg.iterate.rounds:
        raise WorldModelsError(f"--set iterate.rounds={rounds}: the base has {cfg.iterate.rounds}")
    if from_round and not 1 <= from_round <= cfg.iterate.rounds:
        raise WorldModelsError(
            f"--from-round {from_round}: the base has rounds 1..{cfg.iterate.rounds}"
        )
    if keep_search and (
        from_round or rounds != cfg.iterate.rounds or not set(overrides) <= SEARCH_LENGTH
    ):
        raise WorldModelsError(
            "--continue-search: only a longer search of the last C may change ("
            + ", ".join(sorted(SEARCH_LENGTH))
            + ")"
        )
    if from_round:
        scope = f"rounds {from_round}..{rounds}"
    elif rounds == cfg.iterate.rounds:
        scope = "last C"
    else:
        scope = f"rounds {cfg.iterate.rounds + 1}..{rounds}"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, copy_function=_link_or_copy)
    run = RunDir(tmp)
    save_config(new, run.config)
    # what was measured or drawn of the base's agent (eval.json and any `evaluate --out` beside it)
    for path in [*tmp.glob("eval*.json"), run.real_gif, run.dream_gif, run.report, run.chosen]:
        path.unlink(missing_ok=True)
    if from_round:  # the rounds go whole: what they collected, encoded and trained
        for r in range(from_round, cfg.iterate.rounds + 1):
            shutil.rmtree(run.round(r).records)
            for index in round_episodes(cfg, r):
                episode_path(run.episodes, index).unlink(missing_ok=True)
                episode_path(run.latents, index).unlink(missing_ok=True)
        (run.latents / STARTS_IN_LATENTS).unlink(missing_ok=True)
    elif scope == "last C":
        last = run.round(rounds)
        last.done_marker.unlink(missing_ok=True)
        last.searches.unlink(missing_ok=True)
        searches = [last.searching(int(d.name)) for d in last.searches_folder.glob("*")]
        for this in [last, *searches]:  # iterate.final_searches: each search's C and check too
            for path in (this.controller, this.eval, *([] if keep_search else [this.es_state])):
                path.unlink(missing_ok=True)
    record = {"base": str(base), "overrides": overrides, "trained_again": scope,
              "continue_search": keep_search}  # fmt: skip
    atomic_write_text(tmp / "last_round.json", json.dumps(record, indent=2) + "\n")
    tmp.rename(out)
    return scope


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if not (args.out / "last_round.json").exists():
            make_copy(args.run_dir, args.out, overrides, args.continue_search, args.from_round)
        cfg = load_config(RunDir(args.out).config)
        if not iterate_done(args.out, cfg):
            timed(args.out, lambda: iterate(args.out, cfg, progress=not args.quiet))
        scored = with_overrides(
            cfg, {"evaluate.seed": args.seed, "evaluate.episodes": args.episodes}
        )
        path = args.out / f"eval_seed{args.seed}.json"
        if not evaluation_is_current(path, scored):
            evaluate_command(args.out, scored, "controller", "real", not args.quiet, out=path)
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    agent = RunDir(args.out).agent_round(cfg)
    header = read_header(agent.controller, "controller")
    real = json.loads(path.read_text())
    row = {
        "row": args.out.name,
        "overrides": json.loads((args.out / "last_round.json").read_text())["overrides"],
        "seed": args.seed, "episodes": real["episodes"], "mean": real["mean"], "std": real["std"],
        "stderr": real["stderr"],
        "best_eval": header.get("eval_return"), "eval_where": header.get("eval_where", "dream"),
        "round_check": json.loads(agent.eval.read_text())["mean"] if agent.eval.exists() else None,
        "train_s": train_seconds(args.out),
    }  # fmt: skip
    atomic_write_text(args.out / "row.json", json.dumps(row, indent=2) + "\n")
    print(f"{row['row']}: {row['mean']:.1f} +- {row['std']:.1f} (s.e. {row['stderr']:.1f}) over "
          f"{row['episodes']} real episodes, seed {args.seed}; C's best periodic evaluation "
          f"{row['best_eval']:.1f} ({row['eval_where']}); "
          f"trained in {row['train_s'] or 0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
