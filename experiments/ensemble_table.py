"""Does an ensemble M make the dream harder to cheat? One pass on a run's random-policy data (no iterative
training): for each ensemble size K an M trained on the same latents with the same budget, then for each
dream setting (tau, member choice, disagreement penalty, done read at p > 0.5 or sampled) a new C trained
only in that dream, scored in the dream and over real episodes.

    python -m experiments.ensemble_table --run-dir runs/doom-cpu --out runs/ensemble \
        [--members 1 3] [--taus 1.15 0.5] [--penalties 0 1] [--choices random] \
        [--done threshold sampled] [--generations 20] [--trials 8] [--episodes 100] [--seeds 1234 7]

RUN_DIR needs V and the latents of its random-policy episodes (any run after `encode`; iterative rounds'
episodes are left out). OUT/m<K> holds M with K members (trained with RUN_DIR's mdnrnn settings, every
step resumable); OUT/m<K>/<setting> holds one C and its evaluations. Prints a markdown table and writes
OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from experiments._common import parser, stats, timed
from worldmodels.config import load_config, save_config, with_overrides
from worldmodels.data.starts import dream_starts
from worldmodels.data.storage import encode_npz, list_episodes
from worldmodels.evaluate import evaluate_command, evaluation_is_current
from worldmodels.rundir import SHIPPED_STARTS
from worldmodels.train.controller import controller_done, train_controller
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.utils import atomic_write_bytes, read_header


def _link(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def train_m(run_dir: Path, out: Path, members: int, quiet: bool) -> Path:
    """OUT/m<K>: RUN_DIR's V and random-policy latents (linked), and an M of K members trained on them."""
    d = out / f"m{members}"
    d.mkdir(parents=True, exist_ok=True)
    base = load_config(run_dir / "config.json")
    cfg = with_overrides(base, {"mdnrnn.members": members, "iterate.rounds": 0})
    save_config(cfg, d / "config.json")
    _link(run_dir / "vae.pt", d / "vae.pt")
    latents = d / "latents"
    latents.mkdir(exist_ok=True)
    for p in list_episodes(run_dir / "latents")[
        : base.collect.episodes
    ]:  # random-policy episodes only
        _link(p, latents / p.name)
    if not (d / "mdnrnn.pt").exists() or not read_header(d / "mdnrnn.pt", "mdnrnn").get("finished"):
        timed(d, lambda: train_mdnrnn(d, cfg, progress=not quiet))
    return d


def train_c(m_dir: Path, setting: dict, args: argparse.Namespace) -> dict:
    name = f"tau{setting['tau']:g}_{setting['choice']}_p{setting['penalty']:g}"
    name += "_sampled" if setting["sampled"] else ""
    d = m_dir / name
    d.mkdir(exist_ok=True)
    cfg = with_overrides(load_config(m_dir / "config.json"), {
        "controller.where": "dream", "controller.temperature": setting["tau"],
        "controller.member_choice": setting["choice"],
        "controller.disagreement_penalty": setting["penalty"],
        "controller.sample_done": setting["sampled"],
        "controller.population": 64, "controller.trials": args.trials,
        "controller.generations": args.generations, "controller.eval_every": 5,
        "controller.eval_rollouts": 256, "evaluate.episodes": args.episodes,
    })  # fmt: skip
    save_config(cfg, d / "config.json")
    for f in ("vae.pt", "mdnrnn.pt"):
        _link(m_dir / f, d / f)
    if not (d / SHIPPED_STARTS).exists():
        mu, logvar = dream_starts(m_dir)
        atomic_write_bytes(d / SHIPPED_STARTS, encode_npz({"mu": mu, "logvar": logvar}))
    if not controller_done(d, cfg):
        timed(d, lambda: train_controller(d, cfg, progress=not args.quiet))
    row = {"members": cfg.mdnrnn.members, **setting}
    if not evaluation_is_current(d / "eval_dream.json", cfg):
        evaluate_command(d, cfg, "controller", "dream", progress=not args.quiet)
    dream = json.loads((d / "eval_dream.json").read_text())
    row["dream"] = dream["mean"]
    real = []
    for seed in args.seeds:  # one file per seed: eval.json is the last one written
        path = d / f"eval_{seed}.json"
        if not path.exists():
            evaluate_command(d, with_overrides(cfg, {"evaluate.seed": seed}), "controller", "real",
                             progress=not args.quiet)  # fmt: skip
            shutil.copy(d / "eval.json", path)
        real += json.loads(path.read_text())["returns"]
    st = stats(real)
    row.update(real=st["mean"], real_std=st["std"], real_stderr=st["stderr"], episodes=len(real))
    return row


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--run-dir", type=Path, required=True, help="A run after encode (V and latents)."
    )
    ap.add_argument("--out", type=Path, required=True, help="Folder for the Ms and Cs.")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 3], help="Ensemble sizes K.")
    ap.add_argument(
        "--taus", type=float, nargs="+", default=[1.15, 0.5], help="Dream temperatures."
    )
    ap.add_argument(
        "--choices", nargs="+", default=["random"], help="controller.member_choice values."
    )
    ap.add_argument("--penalties", type=float, nargs="+", default=[0.0],
                    help="controller.disagreement_penalty values.")  # fmt: skip
    ap.add_argument("--done", nargs="+", default=["threshold"], choices=["threshold", "sampled"],
                    help="How the dream reads M's done head: p > 0.5 (the paper) or done ~ Bernoulli(p).")  # fmt: skip
    ap.add_argument("--generations", type=int, default=20, help="CMA-ES generations per C.")
    ap.add_argument("--trials", type=int, default=8, help="Dream rollouts per candidate.")
    ap.add_argument("--episodes", type=int, default=100, help="Real (and dream) episodes per seed.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 7], help="Evaluation seeds.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    rows = []
    for k in args.members:
        m_dir = train_m(args.run_dir, args.out, k, args.quiet)
        for tau in args.taus:
            for choice in args.choices if k > 1 else ["random"]:
                for penalty in args.penalties if k > 1 else [0.0]:
                    for done in args.done:
                        setting = {"tau": tau, "choice": choice, "penalty": penalty,
                                   "sampled": done == "sampled"}  # fmt: skip
                        rows.append(train_c(m_dir, setting, args))
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| M members | tau | member choice | penalty | done | dream | real (n) | std. error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        done = "sampled" if r["sampled"] else "p > 0.5"
        print(f"| {r['members']} | {r['tau']:g} | {r['choice']} | {r['penalty']:g} | {done} | {r['dream']:.1f} | "
              f"{r['real']:.1f} +- {r['real_std']:.1f} ({r['episodes']}) | {r['real_stderr']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
