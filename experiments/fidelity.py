"""How faithful is M's dream? For each run directory given: M's held-out NLL, death recall and false alarms
(the last validation of its training), and fixed policies scored in its dream against the real env.

    python -m experiments.fidelity --run-dirs RUN [RUN ...] [--rollouts 256] [--episodes 100] [--seed 1234] \
        [--tau T] [--modes threshold ...] [--reproject] [--out fidelity.json]

RUN is any run after train-mdnrnn (for instance the ensemble table's OUT/m1 and OUT/m3), or a directory
holding one C (OUT/m3/<setting>): its C is then scored too. The policies: random (each of C's outputs drawn
from {-1, 0, +1} and held for collect.hold_min..hold_max frames; in DoomTakeCover the data's policy:
left, no-op or right held 1-10 frames), always left (-1), always right (+1), no-op (0), and the run's C. In
the dream at tau (default: the run's agent tau) with done read at p > 0.5 (the paper) and sampled, each
from M's raw p and from p calibrated (controller.calibrate_done) (--modes: a subset), optionally with
every sampled z put through V (--reproject: controller.reproject_z); in the real env on evaluation seed
list SEED, where the fixed policies do not depend on the run (measured once). With an ensemble M also the
members' disagreement per step along each policy's dream (the quantity controller.disagreement_penalty
charges): where C's cheats lead M, the members should disagree more.
Made for one-output envs with an alive reward (DoomTakeCover). Prints a markdown table; --out writes JSON
(and a later call with the same --out, episodes and seed adds its runs to it, reusing the real scores);
each score there has its mean, std, standard error and 10th, 50th and 90th percentiles.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from experiments._common import parser, stats
from worldmodels.agent import load_controller
from worldmodels.config import Config, agent_temperature, load_config, with_overrides
from worldmodels.dream import build_dream
from worldmodels.episodes import eval_seeds
from worldmodels.evaluate import evaluate_real
from worldmodels.models import controller_dims
from worldmodels.rundir import RunDir
from worldmodels.utils import atomic_write_text, read_metrics

FIXED = {"always left": -1.0, "always right": 1.0, "no-op": 0.0}
# How the dream reads M's done probability: (name, sampled, calibrated). Calibrated: the logit lowered by
# ln(done_pos_weight), undoing the weighted loss's bias (controller.calibrate_done).
MODES = (
    ("threshold", False, False),
    ("sampled", True, False),
    ("threshold calibrated", False, True),
    ("sampled calibrated", True, True),
)


def held_random(n: int, outputs: int, lo: int, hi: int, seed: int):
    """The dream's random policy: per rollout, each output from {-1, 0, +1} held lo..hi steps."""
    rng = np.random.default_rng(seed)
    action = np.zeros((n, outputs), np.float32)
    left = np.zeros(n, int)

    def policy(alive: torch.Tensor, t: int) -> torch.Tensor:
        rows = alive.cpu().numpy()
        new = rows[left[rows] == 0]
        action[new] = rng.integers(-1, 2, (len(new), outputs))
        left[new] = rng.integers(lo, hi + 1, len(new))
        left[rows] -= 1
        return torch.from_numpy(action[rows]).to(alive.device)

    return policy


def constant(value: float, outputs: int):
    def policy(alive: torch.Tensor, t: int) -> torch.Tensor:
        return torch.full((len(alive), outputs), value, device=alive.device)

    return policy


def m_validation(run: Path, cfg: Config) -> dict[str, float]:
    """The last validation row of the training that made the run's agent M: in the metrics beside
    mdnrnn.pt (a linked M's own run) or the run's, from the agent round's M training only (a run with
    rounds logs every round's, and its agent may be an earlier round: `iterate.choose best`)."""
    agent = RunDir(run).agent_round(cfg)
    m_dir = agent.mdnrnn.resolve().parent  # a linked M's own run, or a round's folder
    stage = agent.stage("train-mdnrnn")
    rows = [
        r
        for d in (m_dir, run)
        for r in read_metrics(d)
        if "mdnrnn/val_nll" in r and r.get("stage") == stage
    ]
    if not rows:
        return {}
    last = rows[-1]
    return {k.split("/val_")[1]: last[k] for k in last if k.startswith("mdnrnn/val_")}


def constant_params(cfg: Config, value: float) -> np.ndarray:
    """C with zero weights and a bias whose tanh is `value` (bias on): a fixed action in the real env."""
    in_dim, _ = controller_dims(cfg, 1)
    b = math.atanh(max(-0.99, min(0.99, value)))
    return np.concatenate([np.zeros(in_dim, np.float32), np.float32([b])])


def real_fixed(run: Path, cfg: Config, n: int, seed: int, quiet: bool) -> dict[str, dict]:
    res = {"random": evaluate_real(run, cfg, None, n, seed, not quiet)}
    biased = with_overrides(cfg, {"controller.bias": True})
    for name, v in FIXED.items():
        res[name] = evaluate_real(run, biased, constant_params(cfg, v), n, seed, not quiet)
    return {k: stats(v["returns"]) for k, v in res.items()}


def controller_real(run: Path, cfg: Config, params: np.ndarray, n: int, seed: int, quiet: bool):
    """The C's real score: an evaluation file of this seed and size if there is one, else measured."""
    for name in (f"eval_{seed}.json", "eval.json"):
        p = run / name
        if p.exists():
            e = json.loads(p.read_text())
            if e["seed"] == seed and e["episodes"] == n:
                return stats(e["returns"])
    return stats(evaluate_real(run, cfg, params, n, seed, not quiet)["returns"])


def key(run: Path, reproject: bool) -> str:
    return f"{run} (reprojected)" if reproject else str(run)


def dream_scores(
    run: Path,
    cfg: Config,
    tau: float,
    rollouts: int,
    seed: int,
    params: np.ndarray | None,
    modes: list[str],
) -> dict[str, dict]:
    """Each policy's dream score with done at p > 0.5 and sampled. With an ensemble M the p > 0.5 dream runs
    with penalty 1, so one pass gives both: the score is the length (alive reward), the disagreement a step
    is (length - return) / length."""
    out: dict[str, dict] = {}
    seeds = eval_seeds(seed, rollouts)
    penalty = 1.0 if cfg.mdnrnn.members > 1 else 0.0
    for mode, sample_done, calibrated in (m for m in MODES if m[0] in modes):
        dcfg = with_overrides(cfg, {"controller.temperature": tau,
                                    "controller.sample_done": sample_done,
                                    "controller.calibrate_done": calibrated,
                                    "controller.disagreement_penalty": 0.0 if sample_done else penalty})  # fmt: skip
        dream = build_dream(run, dcfg, "cpu")
        k = dream.out_dim
        policies = {"random": held_random(rollouts, k, cfg.collect.hold_min, cfg.collect.hold_max,
                                          seed)}  # fmt: skip
        policies.update({name: constant(v, k) for name, v in FIXED.items()})
        runs = {name: dream.rollout(None, seeds, policy=pol) for name, pol in policies.items()}
        if params is not None:
            runs["C"] = dream.rollout(np.repeat(params[None], rollouts, 0), seeds)
        for name, (r, n) in runs.items():
            out.setdefault(name, {})[mode] = stats(n)  # +1 a step alive: the score is the length
            if penalty and mode == "threshold":
                out[name]["disagreement"] = float((n - r).sum() / n.sum())
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dirs", type=Path, nargs="+", required=True,
                    help="Run directories (M, or M and one C).")  # fmt: skip
    ap.add_argument("--rollouts", type=int, default=256, help="Dream rollouts per policy.")
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes per policy.")
    ap.add_argument("--seed", type=int, default=1234, help="Evaluation seed list (dream and real).")
    ap.add_argument(
        "--tau", type=float, default=0.0, help="Dream temperature (0: each run's agent tau)."
    )
    ap.add_argument(
        "--modes", nargs="+", choices=[m[0] for m in MODES], default=[m[0] for m in MODES],
        help="How the dream reads done (default: all four).",
    )  # fmt: skip
    ap.add_argument(
        "--reproject", action="store_true",
        help="Dream with controller.reproject_z (each sampled z through V); the runs are kept in --out "
        "as 'RUN (reprojected)'.",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, help="Write the measurements here as JSON.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for run in args.run_dirs:
        if not (run / "config.json").exists():
            sys.exit(f"error: {run}: not a run directory (no config.json)")
    first = load_config(args.run_dirs[0] / "config.json")
    old = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    real_of = {"episodes": args.episodes, "seed": args.seed, "env": first.env.id}
    same = (
        old.get("real_of") == real_of and "median" in old["real"]["random"]
    )  # (older files lack it)
    if same:  # the fixed policies' real scores do not depend on the run: kept from the last call
        real = old["real"]
    else:
        real = real_fixed(args.run_dirs[0], first, args.episodes, args.seed, args.quiet)
    result = {"real_of": real_of, "real": real, "runs": old.get("runs", {}) if same else {}}  # fmt: skip
    for run in args.run_dirs:
        cfg = load_config(run / "config.json")
        if args.reproject:
            cfg = with_overrides(cfg, {"controller.reproject_z": True})
        tau = args.tau or agent_temperature(cfg)
        c_path = RunDir(run).agent(cfg)[1]
        params = load_controller(c_path, cfg) if c_path.exists() else None
        entry = {"tau": tau, "m_validation": m_validation(run, cfg),
                 "dream": dream_scores(run, cfg, tau, args.rollouts, args.seed, params, args.modes)}  # fmt: skip
        if params is not None:
            entry["real_C"] = controller_real(
                run, cfg, params, args.episodes, args.seed, args.quiet
            )
        result["runs"][key(run, args.reproject)] = entry
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print("| run | M val. NLL | death recall | false alarms | tau | policy | dream, p > 0.5 | dream, "
          "sampled done | calibrated p > 0.5 | calibrated, sampled | members' disagreement a step | "
          "real |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in (key(r, args.reproject) for r in args.run_dirs):
        e = result["runs"][run]
        v = e["m_validation"]
        m = (
            f"{v['nll']:.3f} | {100 * v['done_recall']:.0f} % | {100 * v['done_false_alarm']:.2f} %"
            if "done_recall" in v
            else " | | "
        )  # not recorded (a shipped agent keeps no metrics)
        for name, d in e["dream"].items():
            r = e["real_C"] if name == "C" else real[name]
            dis = f"{d['disagreement']:.3f}" if "disagreement" in d else ""
            modes = " | ".join(f"{d[k]['mean']:.1f}" if k in d else "" for k, _, _ in MODES)
            print(f"| {run} | {m} | {e['tau']:g} | {name} | {modes} | {dis} | "
                  f"{r['mean']:.1f} +- {r['stderr']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
