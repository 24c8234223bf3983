"""Train C with CMA-ES: fitness is the mean return of `trials` rollouts, in M's dream (one batch per
generation) or in the real env (parallel workers). The whole ES state is saved every generation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldmodels.agent import save_controller
from worldmodels.config import Config
from worldmodels.data.storage import list_episodes, load_npz
from worldmodels.dream import Dream, DreamSpec
from worldmodels.envs import adapter_for
from worldmodels.errors import WorldModelsError
from worldmodels.es import CMAES
from worldmodels.evaluate import RealEpisodes, play_real
from worldmodels.models import controller_dims, n_params
from worldmodels.parallel import run_tasks
from worldmodels.utils import STREAM_ES, Metrics, read_header, resolve_device, seed_for

EVAL_KEY = 1_000_000  # eval rollouts' seeds live apart from the training rollouts' seeds


STARTS_FILE = "latents_starts.npz"  # a shipped agent's dream starts, in place of RUN_DIR/latents


def dream_starts(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of every episode's first frame: where dream rollouts start."""
    paths = list_episodes(Path(run_dir) / "latents")
    if not paths and (Path(run_dir) / STARTS_FILE).exists():
        starts = load_npz(Path(run_dir) / STARTS_FILE, ("mu", "logvar"), what="dream starts")
        return starts["mu"], starts["logvar"]
    if not paths:
        raise WorldModelsError(
            f"{Path(run_dir) / 'latents'}: no latents; run `worldmodels encode` first"
        )
    firsts = [load_npz(p, ("mu", "logvar"), what="latent") for p in paths]
    return np.stack([f["mu"][0] for f in firsts]), np.stack([f["logvar"][0] for f in firsts])


def dream_can_score(cfg: Config) -> bool:
    """The dream scores rollouts with +1 per step alive (envs like Doom) or with M's reward head."""
    return adapter_for(cfg.env.id).reward_is_alive_bonus or cfg.mdnrnn.reward_head


def build_dream(
    run_dir: Path,
    cfg: Config,
    device: Any = None,
    for_pictures: bool = False,
    mdnrnn: Path | None = None,
) -> Dream:
    """M as a batched env (the run's final M unless `mdnrnn` names one). `for_pictures`: only z is
    wanted (render), so a missing reward is no error."""
    from worldmodels.agent import model_paths
    from worldmodels.train.mdnrnn import load_mdnrnn

    device = device or resolve_device(cfg.device)
    adapter = adapter_for(cfg.env.id)
    mu, logvar = dream_starts(run_dir)
    c = cfg.controller
    spec = DreamSpec(
        temperature=c.temperature, max_steps=c.max_steps, use_cell=c.use_cell, bias=c.bias,
        sample_done=c.sample_done,
        alive_reward=(adapter.reward_is_alive_bonus and not cfg.mdnrnn.reward_head)
        or (for_pictures and not cfg.mdnrnn.reward_head),
    )  # fmt: skip
    return Dream(
        load_mdnrnn(Path(mdnrnn) if mdnrnn else model_paths(Path(run_dir), cfg)[0], cfg, device),
        adapter,
        mu,
        logvar,
        spec,
        device,
    )


class RealFitness:
    """Rollouts of candidates in the real env, one worker task per candidate."""

    def __init__(self, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> None:
        self.run_dir, self.cfg = str(Path(run_dir).resolve()), cfg
        self.mdnrnn = str(Path(mdnrnn).resolve()) if mdnrnn else None

    def rollout(self, params: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as Dream.rollout: row i of params with seeds[i]; rows sharing params are batched."""
        groups: dict[bytes, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault(np.asarray(p, np.float32).tobytes(), []).append(i)
        tasks = [
            RealEpisodes(self.run_dir, params[rows[0]], tuple(seeds[i] for i in rows), self.mdnrnn)
            for rows in groups.values()
        ]
        index = {id(t): rows for t, rows in zip(tasks, groups.values(), strict=True)}
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), int)
        for task, res in run_tasks(play_real, tasks, self.cfg.parallel):
            for i, (r, n) in zip(index[id(task)], res, strict=True):
                returns[i], lengths[i] = r, n
        return returns, lengths


def train_controller(
    run_dir: Path,
    cfg: Config,
    progress: bool = True,
    out_dir: Path | None = None,
    mdnrnn: Path | None = None,
    stage: str = "train-controller",
) -> dict[str, float]:
    """CMA-ES over C's parameters into OUT_DIR/controller.pt (default: the run directory), with its
    state in OUT_DIR/es_state.pkl; the dream is M at `mdnrnn` (default RUN_DIR/mdnrnn.pt)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    path, state_path = out_dir / "controller.pt", out_dir / "es_state.pkl"
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
        state = CMAES(size, c.population, c.sigma0, seed_for(cfg.seed, STREAM_ES))
    mdnrnn = Path(mdnrnn) if mdnrnn else run_dir / "mdnrnn.pt"
    fitness = (
        build_dream(run_dir, cfg, mdnrnn=mdnrnn)
        if c.where == "dream"
        else RealFitness(run_dir, cfg, mdnrnn)
    )
    metrics = Metrics(run_dir, stage, cfg.tensorboard)
    bar = tqdm(total=c.generations, initial=state.generation, desc=f"{stage} ({c.where})",
               unit="gen", disable=not progress, dynamic_ncols=True)  # fmt: skip
    row: dict[str, float] = {}
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
                row["es/eval_return"] = float(er.mean())
                if er.mean() > state.best_eval:
                    state.best_eval, state.best_params = float(er.mean()), mean
                row["es/best_eval_return"] = float(state.best_eval)
            metrics.log(gen + 1, **row)
            state.save(state_path)
            bar.update(1)
            bar.set_postfix(best=f"{row['es/return_best']:.0f}", mean=f"{row['es/return_mean']:.0f}",
                            worst=f"{row['es/return_worst']:.0f}", rollouts_s=f"{row['perf/rollouts_per_s']:.0f}")  # fmt: skip
    finally:
        bar.close()
    header = {"finished": True, "generation": state.generation, "eval_return": state.best_eval,
              "where": c.where, "temperature": c.temperature, "config": cfg.to_dict()}  # fmt: skip
    save_controller(path, state.best_params, header)
    metrics.close()
    return row
