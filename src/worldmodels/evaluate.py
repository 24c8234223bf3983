"""Score a controller (or the random policy) over N real episodes on a fixed seed list, or in the dream."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldmodels.agent import load_controller
from worldmodels.config import Config, round_config
from worldmodels.dream import build_dream
from worldmodels.envs import adapter_class, dream_can_score
from worldmodels.episodes import eval_seeds
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import EVALUATIONS, Round, RunDir
from worldmodels.utils import Stopwatch, atomic_write_text
from worldmodels.versions import package_versions
from worldmodels.workers import EpisodesTask, VMWeights, play_tasks, split_into_tasks


def evaluate_real(
    run_dir: Path,
    cfg: Config,
    params: np.ndarray | None,
    n: int,
    seed: int,
    progress: bool = True,
    mdnrnn: Path | None = None,
) -> dict[str, Any]:
    seeds = eval_seeds(seed, n)
    if params is None:  # the random policy: one episode after another, small tasks
        per_task = max(1, min(8, n // (4 * cfg.parallel.workers)))
        parts = [slice(i, i + per_task) for i in range(0, n, per_task)]
    else:  # the batched agent: parallel.envs episodes at once, every worker busy
        parts = split_into_tasks(n, cfg)
    tasks = [EpisodesTask(params, tuple(seeds[p])) for p in parts]
    weights = (
        VMWeights.random_policy(cfg) if params is None else VMWeights.of_run(run_dir, cfg, mdnrnn)
    )
    results: dict[int, tuple[float, int]] = {}
    clock = Stopwatch()
    label = "evaluate " + ("random" if params is None else "controller")
    with tqdm(total=n, desc=label, unit="ep", disable=not progress, dynamic_ncols=True) as bar:
        for task, res in play_tasks(tasks, weights, cfg):
            for s, r in zip(task.seeds, res, strict=True):
                results[s] = r
            bar.update(len(res))
            done = list(results.values())
            bar.set_postfix(mean=f"{np.mean([r for r, _ in done]):.1f}")
    returns = [results[s][0] for s in seeds]
    lengths = [results[s][1] for s in seeds]
    return summary(cfg, returns, lengths, seed, "real", params is None, clock())


def summary(
    cfg: Config,
    returns: list[float],
    lengths: list[int],
    seed: int,
    where: str,
    random: bool,
    wall: float,
) -> dict[str, Any]:
    r = np.asarray(returns, float)
    return {
        "env": cfg.env.id,
        "where": where,
        "policy": "random" if random else "controller",
        "episodes": len(r),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "stderr": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan"),
        "returns": [float(x) for x in r],
        "lengths": [int(x) for x in lengths],
        "seed": seed,
        "temperature": cfg.controller.temperature if where == "dream" else None,
        "wall_s": round(wall, 2),
        "versions": package_versions(),
    }


def evaluate_dream(
    run_dir: Path, cfg: Config, params: np.ndarray, n: int, seed: int, mdnrnn: Path | None = None
) -> dict[str, Any]:
    """C (`params`) over n dream episodes of `cfg`'s temperature, in the run's final M's dream unless
    `mdnrnn` names another M."""
    clock = Stopwatch()
    dream = build_dream(run_dir, cfg, mdnrnn=mdnrnn)
    returns, lengths = dream.rollout(np.repeat(params[None], n, 0), eval_seeds(seed, n))
    return summary(cfg, list(returns), list(lengths), seed, "dream", False, clock())


def evaluation_is_current(path: Path, cfg: Config) -> bool:
    """An evaluation file exists and was made with the config's episode count and seed."""
    if not path.exists():
        return False
    e = json.loads(path.read_text())
    if e["policy"] == "controller" and e.get("agent") != agent_files(path.parent, cfg):
        return False  # another M and C than the run's agent now (iterative training added rounds)
    return (
        e["episodes"] == cfg.evaluate.episodes
        and e["seed"] == cfg.evaluate.seed
        and e.get("env", cfg.env.id) == cfg.env.id
    )


def evaluate_done(run_dir: Path, cfg: Config) -> bool:
    """Every evaluation the stage writes exists and is current."""
    return all(
        evaluation_is_current(Path(run_dir) / n, cfg) for n in expected_evaluations(cfg).values()
    )


def agent_files(run_dir: Path, cfg: Config) -> dict[str, str] | None:
    """The run's agent's M and C, relative to the run directory (None while iterative training runs or
    while C is missing)."""
    try:
        r = RunDir(run_dir).agent_round(cfg)
    except WorldModelsError:
        return None
    return round_files(r) if r.controller.exists() else None


def round_files(r: Round) -> dict[str, str]:
    """A round's M and C as the evaluation files record them (relative to the run directory)."""
    return {"mdnrnn": r.run.relative(r.mdnrnn), "controller": r.run.relative(r.controller)}


def scored_round(run_dir: Path, cfg: Config, round_: int | None, out: Path | None) -> Round:
    """The round whose M and C `evaluate` scores: the run's agent's, or round `round_` (`--round`),
    which must have finished and be written to a file of its own."""
    run = RunDir(run_dir)
    if round_ is None:
        return run.agent_round(cfg)
    if out is None:
        raise WorldModelsError(
            f"--round {round_} needs --out FILE (eval.json is the run's agent's, "
            f"rounds/{round_}/eval.json the round's own check)"
        )
    if not 0 <= round_ <= cfg.iterate.rounds:
        raise WorldModelsError(
            f"--round {round_}: the run has rounds 0 to {cfg.iterate.rounds} (iterate.rounds)"
        )
    r = run.round(round_)
    if not r.is_done():
        raise WorldModelsError(f"--round {round_}: round {round_} of {run_dir} has not finished")
    return r


def expected_evaluations(cfg: Config) -> dict[tuple[str, str], str]:
    """What the pipeline's evaluate stage writes: the dream row only where the dream can score."""
    return {k: v for k, v in EVALUATIONS.items() if k[1] == "real" or dream_can_score(cfg)}


def evaluate_command(
    run_dir: Path,
    cfg: Config,
    policy: str,
    where: str,
    progress: bool = True,
    env: str | None = None,
    out: Path | None = None,
    round_: int | None = None,
) -> int:
    """`worldmodels evaluate`: one evaluation, written to its JSON file and printed as mean +- std.
    `env`: score in another registered id of the same game (gymnasium's own CarRacing-v3 for an agent
    trained on worldmodels/CarRacing-v3); the run's config is not changed. `out`: the file to write
    instead of the run directory's (its folder must exist). `round_`: score that round's C with its M
    (in the dream at the temperature that C trained at) instead of the run's agent; needs `out`."""
    run_dir = Path(run_dir)
    e = cfg.evaluate
    if out is not None and not out.parent.is_dir():
        raise WorldModelsError(f"--out {out}: folder {out.parent} does not exist")
    if policy == "random" and where == "dream":
        raise WorldModelsError(
            "--policy random --where dream: the random policy is scored in the real env only"
        )
    if env and env != cfg.env.id:
        if where == "dream":
            raise WorldModelsError(
                f"--env {env}: the dream has no env to choose; drop --where dream"
            )
        if adapter_class(env) is not adapter_class(cfg.env.id):
            raise WorldModelsError(
                f"--env {env}: not the same game as the run's {cfg.env.id} (another adapter)"
            )
        cfg = replace(cfg, env=replace(cfg.env, id=env))
    if policy == "random":
        if round_ is not None:
            raise WorldModelsError("--round scores a round's C: drop --policy random")
        result = evaluate_real(run_dir, cfg, None, e.episodes, e.seed, progress)
    else:
        r = scored_round(run_dir, cfg, round_, out)
        params = load_controller(r.controller, cfg)
        if where == "dream":  # at the tau this C trained at
            own = round_config(cfg, r.index)
            result = evaluate_dream(run_dir, own, params, e.episodes, e.seed, r.mdnrnn)
        else:
            result = evaluate_real(run_dir, cfg, params, e.episodes, e.seed, progress, r.mdnrnn)
        result["agent"] = round_files(r)
    write_eval(out or RunDir(run_dir).evaluation(policy, where), result)
    return 0


def write_eval(path: Path, result: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"{result['policy']} in the {result['where']} env {result['env']}: {result['mean']:.1f} +- "
          f"{result['std']:.1f} over {result['episodes']} episodes (seed {result['seed']}) -> {path}")  # fmt: skip


def evaluate_run(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, Any]:
    """The pipeline's evaluate stage: the controller and the random policy on the same seeds, and the
    controller in the dream; each file is written as soon as it is measured (a rerun skips it)."""
    run_dir = Path(run_dir)
    for (policy, where), name in expected_evaluations(cfg).items():
        if evaluation_is_current(run_dir / name, cfg):
            continue
        evaluate_command(run_dir, cfg, policy, where, progress)
    return {}
