"""A finished run's last round with an ensemble M: the run's last M as member 0, and K - 1 more members
each trained as that M was (from the previous round's M, `iterate.mdnrnn_updates` updates on every episode
so far) but with another seed (another validation split, batch order and z draws); then the last C trained
again in the ensemble's dream (`controller.member_choice`, `controller.disagreement_penalty` from `--set`)
and scored on a tuning seed list, as `experiments.last_round` does.

    python -m experiments.ensemble_last_round --run-dir runs/carracing-cpu --out runs/ens3 --members 3 \
        --set controller.disagreement_penalty=20 --set iterate.searches=1 --seed 99 --episodes 100

Before the search it prints, for every C the base run's rounds trained (each with its round's real check),
its mean return in the ensemble's dream and the members' disagreement summed over the rollout (the std across
members of their expected next z, mean over z's dimensions): does the disagreement mark the Cs that cheat M?
`--measure-only` stops there. Every step resumes: the members train resumably under OUT/members/J, the
ensemble is written once, the search and the score resume as in `last_round`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from experiments import last_round
from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import Config, load_config, round_config, save_config, with_overrides
from worldmodels.dream import build_dream
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNNEnsemble
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.rundir import RunDir
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.utils import atomic_write_text, read_header, save_checkpoint


def build_parser() -> argparse.ArgumentParser:
    ap = last_round.row_flags(parser(__doc__, __name__))
    ap.add_argument("--members", type=int, default=3, help="Ensemble size K (>= 2).")
    ap.add_argument("--rollouts", type=int, default=64, help="Dream rollouts a C in the table.")
    ap.add_argument("--measure-only", action="store_true", help="Stop after the table.")
    ap.add_argument("--members-from", type=Path, metavar="ROW",
                    help="Take members 1..K-1 from another row of this base (trained there) instead of "
                    "training them again.")  # fmt: skip
    return ap


def train_member(base: Path, out: Path, cfg: Config, rounds: int, j: int, progress: bool) -> Path:
    """Member j: the last round's M trained again from the previous round's M with seed cfg.seed + j,
    under OUT/members/j (found there when OUT is another row that trained it)."""
    home = out / "members" / str(j)
    run = RunDir(home)
    this, prev = run.round(rounds).mdnrnn, run.round(rounds - 1).mdnrnn
    if not (this.exists() and read_header(this, "mdnrnn").get("finished")):
        for folder in (run.latents, prev.parent, this.parent):
            folder.mkdir(parents=True, exist_ok=True)
        links = [(f, run.latents / f.name) for f in RunDir(base).latents.iterdir()]
        for src, dst in [*links, (RunDir(base).round(rounds - 1).mdnrnn, prev)]:
            if not dst.exists():  # hard links: never written in place
                os.link(src, dst)
        m_cfg = with_overrides(cfg, {"seed": cfg.seed + j, "mdnrnn.members": 1,
                                     "mdnrnn.max_updates": cfg.iterate.mdnrnn_updates,
                                     "mdnrnn.epochs": 1000})  # fmt: skip
        save_config(m_cfg, run.config)
        train_mdnrnn(home, m_cfg, progress, rounds)
    return this


def write_ensemble(
    base: Path, out: Path, k: int, progress: bool, members_from: Path | None = None
) -> None:
    """OUT's last-round M as the ensemble of the base's last M and K - 1 members (once)."""
    cfg = load_config(RunDir(base).config)
    rounds = cfg.iterate.rounds
    target = RunDir(out).round(rounds).mdnrnn
    if read_header(target, "mdnrnn")["config"]["mdnrnn"].get("members", 1) == k:
        return
    paths = [RunDir(base).round(rounds).mdnrnn]
    paths += [
        train_member(base, members_from or out, cfg, rounds, j, progress) for j in range(1, k)
    ]
    one = with_overrides(cfg, {"mdnrnn.members": 1})
    members = [load_mdnrnn(p, one) for p in paths]
    ensemble = MDNRNNEnsemble(members)
    header = read_header(paths[0], "mdnrnn")
    header["config"] = load_config(RunDir(out).config).to_dict()
    header["ensemble_of"] = [str(p) for p in paths]
    header.pop("format", None)
    save_checkpoint(target, header, {"model": ensemble.state_dict()})


def measure(base: Path, out: Path, rollouts: int) -> list[dict]:
    """Every C of the base's rounds in OUT's ensemble dream: dream return and summed disagreement."""
    cfg = round_config(load_config(RunDir(out).config))
    rounds = cfg.iterate.rounds
    dream = build_dream(out, cfg, device="cpu", mdnrnn=RunDir(out).round(rounds).mdnrnn)
    plain = dream.with_spec(replace(dream.spec, disagreement_penalty=0.0))
    unit = dream.with_spec(replace(dream.spec, disagreement_penalty=1.0))
    rows = []
    for r in range(1, rounds + 1):
        this = RunDir(base).round(r)
        found = sorted(this.searches_folder.glob("*")) if this.searches_folder.exists() else []
        cands = [(f"{r}/{d.name}", d / "controller.pt", d / "eval.json") for d in found]
        cands = cands or [(f"{r}", this.controller, this.eval)]
        for name, c_path, e_path in cands:
            if not (c_path.exists() and e_path.exists()):
                continue
            params = np.repeat(load_controller(c_path, cfg)[None], rollouts, axis=0)
            seeds = list(range(10_000, 10_000 + rollouts))
            ret, _ = plain.rollout(params, seeds)
            pen, _ = unit.rollout(params, seeds)
            rows.append({"c": name, "real_check": json.loads(e_path.read_text())["mean"],
                         "dream": float(ret.mean()), "disagreement": float((ret - pen).mean())})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.members < 2:
        raise SystemExit("error: --members must be >= 2")
    try:
        overrides = last_round.parse_overrides(args.set) | {"mdnrnn.members": args.members}
        if not (args.out / "last_round.json").exists():
            last_round.make_copy(args.run_dir, args.out, overrides, False)
        write_ensemble(args.run_dir, args.out, args.members, not args.quiet, args.members_from)
        table = args.out / "disagreement.json"
        same = args.members_from / "disagreement.json" if args.members_from else None
        if not table.exists() and same and same.exists():  # the same ensemble: the same table
            atomic_write_text(table, same.read_text())
        if not table.exists():
            atomic_write_text(
                table, json.dumps(measure(args.run_dir, args.out, args.rollouts), indent=2) + "\n"
            )
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    rows = json.loads(table.read_text())
    print("| C (round/search) | real check (16) | ensemble dream | summed disagreement |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['c']} | {row['real_check']:.1f} | {row['dream']:.1f} | {row['disagreement']:.2f} |"
        )
    if len(rows) > 2:
        real = [r["real_check"] for r in rows]
        for key in ("dream", "disagreement"):
            print(
                f"{key} vs real check: correlation {np.corrcoef([r[key] for r in rows], real)[0, 1]:.3f}"
            )
    if args.measure_only:
        return
    last_round.main(["--run-dir", str(args.run_dir), "--out", str(args.out), "--seed", str(args.seed),
                     "--episodes", str(args.episodes), *sum((["--set", s] for s in args.set), []),
                     *(["--quiet"] if args.quiet else [])])  # fmt: skip


if __name__ == "__main__":
    main()
