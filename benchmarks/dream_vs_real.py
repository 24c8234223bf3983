"""Agent steps/s in the batched dream against the real env, and CMA-ES's share of a generation.

    python benchmarks/dream_vs_real.py [--run-dir DIR]

Uses the paper's Doom sizes (V z 64, M 512 units, C on [z, c, h]). Without --run-dir it builds untrained
models (speed does not depend on the weights) in a temporary run directory holding a few real episodes.
Dream: one generation of population 64 x 16 trials = 1,024 rollouts as one batch, 200 steps each (the
untrained done head never fires). Real: the agent (V + M + C on real frames) on all local workers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import preset, save_config, with_overrides  # noqa: E402
from worldmodels.data.collect import collect  # noqa: E402
from worldmodels.dream import build_dream  # noqa: E402
from worldmodels.es import CMAES  # noqa: E402
from worldmodels.evaluate import evaluate_real  # noqa: E402
from worldmodels.models import MDNRNN, ConvVAE  # noqa: E402
from worldmodels.train.common import Position, save_training  # noqa: E402
from worldmodels.train.vae import encode_latents  # noqa: E402


def untrained_run(run: Path, workers: int) -> None:
    cfg = with_overrides(preset("doom"), {"collect.episodes": 8, "parallel.workers": workers,
                                          "controller.max_steps": 200})  # fmt: skip
    save_config(cfg, run / "config.json")
    collect(run, cfg, progress=False)
    torch.manual_seed(0)
    vae, m = ConvVAE(64), MDNRNN(64, 1, 512, 5, done_head=True)
    with torch.no_grad():
        m.head.bias[-1] = -10.0  # done never fires: every rollout runs the full length
    for name, model, extra in (("vae", vae, {}), ("mdnrnn", m, {"action_dim": 1})):
        opt = torch.optim.Adam(model.parameters())
        save_training(
            run / f"{name}.pt",
            name,
            cfg,
            Position(finished=True),
            model,
            opt,
            torch.Generator(),
            extra,
        )
    encode_latents(run, cfg, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run-dir", type=Path, help="A finished Doom run to use instead of untrained models."
    )
    p.add_argument("--workers", type=int, default=2, help="Local workers for the real env.")
    p.add_argument("--real-episodes", type=int, default=8, help="Real episodes to time.")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = args.run_dir or Path(d)
        if args.run_dir is None:
            untrained_run(run, args.workers)
        from worldmodels.config import load_config

        cfg = with_overrides(load_config(run / "config.json"), {"parallel.workers": args.workers,
                                                                "controller.max_steps": 200})  # fmt: skip
        dream = build_dream(run, cfg, "cpu")
        n = 64 * 16
        size = dream.z_dim + 2 * dream.m.hidden
        es = CMAES(size, 64, 0.1, 0)
        t0 = time.perf_counter()
        X = es.ask()
        t1 = time.perf_counter()
        _, lengths = dream.rollout(np.repeat(X, 16, 0), list(range(16)) * 64)
        t2 = time.perf_counter()
        es.tell(np.random.default_rng(0).normal(size=64))
        t3 = time.perf_counter()
        dream_sps = lengths.sum() / (t2 - t1)
        params = X[0]
        t = time.perf_counter()
        res = evaluate_real(run, cfg, params, args.real_episodes, seed=0, progress=False)
        real_sps = sum(res["lengths"]) / (time.perf_counter() - t)
        report("dream_vs_real", {
            "dream_batch": n, "dream_agent_steps_per_s": round(dream_sps),
            "real_agent_steps_per_s": round(real_sps), "real_workers": args.workers,
            "dream_vs_real": round(dream_sps / real_sps, 1),
            "cmaes_ask_tell_s": round((t1 - t0) + (t3 - t2), 3), "generation_s": round(t3 - t0, 3),
            "cmaes_share_of_generation": round(((t1 - t0) + (t3 - t2)) / (t3 - t0), 4),
            "trained_models": args.run_dir is not None,
        })  # fmt: skip


if __name__ == "__main__":
    main()
