"""Train C with CMA-ES: fitness is the mean return of `trials` rollouts, in M's dream (one batch per
generation) or in the real env (parallel workers). The whole ES state is saved every generation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldmodels.agent import save_controller
from worldmodels.config import Config
from worldmodels.dream import build_dream
from worldmodels.envs import adapter_for
from worldmodels.errors import WorldModelsError
from worldmodels.es import CMAES
from worldmodels.models import controller_dims, n_params
from worldmodels.rundir import RunDir
from worldmodels.train.common import GracefulStop
from worldmodels.utils import STREAM_ES, Metrics, checkpoint_finished, read_header, seed_for
from worldmodels.workers import RealFitness

EVAL_KEY = 1_000_000  # eval rollouts' seeds live apart from the training rollouts' seeds
REAL_KEY = 2_000_000  # and controller.select_real's real episodes apart from both


def controller_done(run_dir: Path, cfg: Config) -> bool:
    return checkpoint_finished(RunDir(run_dir).round(0).controller, "controller")


def train_controller(
    run_dir: Path,
    cfg: Config,
    progress: bool = True,
    r: int = 0,
    x0: np.ndarray | None = None,
    search: int | None = None,
) -> dict[str, float]:
    """CMA-ES over C's parameters of round r (0: the first C; iterative training's rounds from 1), in
    that round's M's dream or the real env, resumable from the CMA-ES state of every generation. `x0`:
    where the search starts (default 0, the paper's); `search`: one of the round's several searches
    (iterate.searches, final_searches), kept in rounds/r/searches/j."""
    run_dir = Path(run_dir)
    this = RunDir(run_dir).round(r)
    this = this if search is None else this.searching(search)
    path, state_path, mdnrnn, stage = (this.controller, this.es_state, this.mdnrnn,
                                       this.stage("train-controller"))  # fmt: skip
    if path.exists() and read_header(path, "controller").get("finished"):
        return {}
    c = cfg.controller
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    size = n_params(in_dim, out_dim, c.bias)
    if state_path.exists():
        state = CMAES.load(state_path)
        if state.es.N != size:
            raise WorldModelsError(
                f"{state_path}: CMA-ES state has {state.es.N} parameters, C needs {size}"
            )
    else:
        state = CMAES(size, c.population, c.sigma0, seed_for(cfg.seed, STREAM_ES), x0)
    fitness = (
        build_dream(run_dir, cfg, mdnrnn=mdnrnn, starts=c.dream_starts)
        if c.where == "dream"
        else RealFitness(run_dir, cfg, mdnrnn)
    )
    real = RealFitness(run_dir, cfg, mdnrnn) if c.select_real and c.where == "dream" else None
    real_seeds = [seed_for(cfg.seed, STREAM_ES, REAL_KEY, i) for i in range(c.select_real)]
    metrics = Metrics(run_dir, stage, cfg.tensorboard)
    bar = tqdm(total=c.generations, initial=state.generation, desc=f"{stage} ({c.where})",
               unit="gen", disable=not progress, dynamic_ncols=True)  # fmt: skip
    row: dict[str, float] = {}
    stop = GracefulStop("generation").start()
    try:
        while state.generation < c.generations:
            gen = state.generation
            t0 = time.perf_counter()
            X = state.ask()
            t1 = time.perf_counter()
            # Common random numbers: trial k of every candidate uses the same seed, so candidates of a
            # generation are ranked on the same start frames and noise.
            seeds = [seed_for(cfg.seed, STREAM_ES, gen, k) for k in range(c.trials)]
            returns, lengths = fitness.rollout(np.repeat(X, c.trials, 0), seeds * c.population)
            fit = returns.reshape(c.population, c.trials).mean(1)
            t2 = time.perf_counter()
            state.tell(fit)
            t3 = time.perf_counter()
            row = {
                "es/return_mean": float(fit.mean()),
                "es/return_best": float(fit.max()),
                "es/return_worst": float(fit.min()),
                "es/sigma": state.sigma,
                "perf/rollout_steps_per_s": float(lengths.sum()) / (t2 - t1),
                "perf/rollouts_per_s": len(returns) / (t2 - t1),
                "perf/es_overhead": ((t1 - t0) + (t3 - t2)) / (t3 - t0),
            }
            if (gen + 1) % c.eval_every == 0 or gen + 1 == c.generations:
                eval_seeds = [
                    seed_for(cfg.seed, STREAM_ES, gen, EVAL_KEY + i) for i in range(c.eval_rollouts)
                ]
                mean = state.mean.astype(np.float32)
                er, _ = fitness.rollout(np.repeat(mean[None], c.eval_rollouts, 0), eval_seeds)
                row["es/eval_return"] = score = float(er.mean())
                if real is not None:  # the same real episodes score every mean; they choose
                    rr, _ = real.rollout(np.repeat(mean[None], len(real_seeds), 0), real_seeds)
                    row["es/eval_real_return"] = score = float(rr.mean())
                if score > state.best_eval:
                    state.best_eval, state.best_params = score, mean
                row["es/best_eval_return"] = float(state.best_eval)
            metrics.log(gen + 1, **row)
            state.save(state_path)
            stop.check()
            bar.update(1)
            bar.set_postfix(best=f"{row['es/return_best']:.0f}", mean=f"{row['es/return_mean']:.0f}",
                            worst=f"{row['es/return_worst']:.0f}", rollouts_s=f"{row['perf/rollouts_per_s']:.0f}")  # fmt: skip
    finally:
        stop.close()
        bar.close()
    # eval_return: the best periodic evaluation, in the real env where real episodes chose (eval_where)
    header = {"finished": True, "generation": state.generation, "eval_return": state.best_eval,
              "eval_where": "real" if real is not None else c.where, "where": c.where,
              "temperature": c.temperature, "config": cfg.to_dict()}  # fmt: skip
    save_controller(path, state.best_params, header)
    metrics.close()
    return row
