"""Does a longer-trained M give a better C? The shipped Doom agent's M trained further, for a round's updates
or several times as many, on the same episodes; then new Cs in each M's dream, scored in the real env.

    python -m experiments.longer_m --out runs/longer-m [--updates 600 3000] [--c-seeds 0 1] \
        [--eval-seeds 1234 7] [--episodes 100]

OUT holds `doom-cpu`'s 2,000 random-policy episodes (collected again: the same seed gives the same
episodes) and 500 episodes of the shipped C with M (5 % exploration, as a round of iterative training
collects them), encoded with the shipped V. For each N in --updates the shipped M trains N more updates of
`doom-cpu`'s batch on all of them (OUT/mdnrnn_N.pt, as `iterate` trains a round's M: from its weights, a
fresh optimiser); for each seed S in --c-seeds a new C is trained in that M's dream with the shipped C's
settings and CMA-ES seed S (OUT/cN_sS), and plays --episodes real episodes on each of --eval-seeds. Every
step is skipped when its file exists, so a stopped run resumes. Prints M's validation numbers and the Cs'
real scores, with the shipped C's on the same episodes for a paired comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np

from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import Config, load_config, save_config, with_overrides
from worldmodels.data.collect import collect
from worldmodels.evaluate import evaluate_real
from worldmodels.pretrained import pretrained_dir
from worldmodels.train.controller import train_controller
from worldmodels.train.iterate import collect_round
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.train.vae import encode_latents
from worldmodels.utils import atomic_write_text


def once(times: Path, name: str, step) -> None:
    """Run `step` and note its wall seconds in TIMES (a JSON object), unless it ran before."""
    done = json.loads(times.read_text()) if times.exists() else {}
    if name in done:
        return
    t0 = time.perf_counter()
    step()
    done[name] = round(time.perf_counter() - t0, 1)
    atomic_write_text(times, json.dumps(done, indent=1) + "\n")


def scored(d: Path, cfg: Config, seed: int, n: int) -> list[float]:
    """The returns of D's agent over n real episodes of `seed` (D/eval_SEED.json, made once)."""
    path = d / f"eval_{seed}.json"
    if not path.exists():
        params = load_controller(d / "controller.pt", cfg)
        res = evaluate_real(d, cfg, params, n, seed, progress=False)
        atomic_write_text(path, json.dumps(res, indent=2))
    return json.loads(path.read_text())["returns"]


def paired(a: list[float], b: list[float]) -> str:
    diff = np.asarray(a) - np.asarray(b)
    return f"{diff.mean():+.1f} ({diff.std(ddof=1) / math.sqrt(len(diff)):.1f})"


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--out", type=Path, required=True, help="Where the episodes, Ms and Cs go.")
    ap.add_argument(
        "--updates", type=int, nargs="+", default=[600, 3000], help="M's further updates."
    )
    ap.add_argument(
        "--c-seeds", type=int, nargs="+", default=[0, 1], help="CMA-ES seeds of the Cs."
    )
    ap.add_argument(
        "--eval-seeds", type=int, nargs="+", default=[1234, 7], help="Evaluation seeds."
    )
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes per C and seed.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out, src = args.out, pretrained_dir("doom")
    out.mkdir(parents=True, exist_ok=True)
    times = out / "times.json"
    shipped = out / "shipped"
    if not (shipped / "controller.pt").exists():
        shutil.copytree(src, shipped, dirs_exist_ok=True)
    cfg = load_config(src / "config.json")
    if not (out / "vae.pt").exists():
        shutil.copy(src / "vae.pt", out / "vae.pt")
    save_config(cfg, out / "config.json")
    once(times, "collect", lambda: collect(out, cfg, progress=True))
    c_cfg = with_overrides(cfg, {"iterate.episodes": 500, "iterate.explore": 0.05})
    params = load_controller(shipped / "controller.pt", cfg)
    once(times, "collect_c", lambda: collect_round(out, c_cfg, 1, shipped / "mdnrnn.pt",
                                                    params, progress=True))  # fmt: skip
    once(times, "encode", lambda: encode_latents(out, cfg, progress=True))
    rows = []
    for n in args.updates:
        m_cfg = with_overrides(cfg, {"mdnrnn.max_updates": n, "mdnrnn.epochs": 1000})
        m_path = out / f"mdnrnn_{n}.pt"
        train_m = partial(train_mdnrnn, out, m_cfg, True, path=m_path,
                          init=shipped / "mdnrnn.pt", stage=f"m{n}")  # fmt: skip
        once(times, f"m{n}", train_m)
        val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in val if r.get("stage") == f"m{n}" and "mdnrnn/val_nll" in r][-1]
        print(f"M + {n} updates: val. NLL {last['mdnrnn/val_nll']:.4f}, done loss "
              f"{last['mdnrnn/val_done_loss']:.3f}, deaths recalled {last['mdnrnn/val_done_recall']:.0%}, "
              f"false alarms {last['mdnrnn/val_done_false_alarm']:.2%} a step")  # fmt: skip
        for s in args.c_seeds:
            d = out / f"c{n}_s{s}"
            d.mkdir(exist_ok=True)
            for name in ("vae.pt", "latents_starts.npz"):
                if not (d / name).exists():
                    shutil.copy(src / name, d / name)
            if not (d / "mdnrnn.pt").exists():
                shutil.copy(m_path, d / "mdnrnn.pt")
            s_cfg = with_overrides(cfg, {"seed": s})
            save_config(s_cfg, d / "config.json")
            once(times, d.name, partial(train_controller, d, s_cfg, progress=True))
            rows.append((n, s, d, s_cfg))
    ship = {e: scored(shipped, cfg, e, args.episodes) for e in args.eval_seeds}
    ship_all = sum((ship[e] for e in args.eval_seeds), [])
    print("| M's further updates | C's seed | " + " | ".join(f"seed {e}" for e in args.eval_seeds)
          + " | all | paired against the shipped C (std. error) |")  # fmt: skip
    print("|---|---|" + "---|" * (len(args.eval_seeds) + 2))
    for n, s, d, s_cfg in rows:
        got = {e: scored(d, s_cfg, e, args.episodes) for e in args.eval_seeds}
        every = sum((got[e] for e in args.eval_seeds), [])
        cells = " | ".join(f"{np.mean(got[e]):.1f}" for e in args.eval_seeds)
        print(f"| {n} | {s} | {cells} | {np.mean(every):.1f} | {paired(every, ship_all)} |")
    print(f"the shipped C: {np.mean(ship_all):.1f} over {len(ship_all)} episodes")


if __name__ == "__main__":
    main()
