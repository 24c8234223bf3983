"""Iterative training (the paper's "Iterative Training Procedure"): after the first C, each round

1. collects `iterate.episodes` real episodes with the current C and M, handing over to the random policy
   now and then (`iterate.explore`), into RUN_DIR/episodes (indices after the random-policy ones);
2. encodes them and trains M further, from the previous round's weights, on every episode so far;
3. trains a new C inside the new M's dream, from x0 = 0 (or from the last C, `iterate.warm_start`).

Why: a C trained in the dream of an M that only saw random play finds the places where M is wrong. On
DoomTakeCover with 2,000 random episodes, C learned to hold "right": M had rarely seen anyone reach the
wall and keeps the dream going, while the real agent pinned to the wall dies early. Round r's episodes show M
what C's behaviour really leads to. C is still trained only inside the dream.

Round r lives in RUN_DIR/rounds/r/ (mdnrnn.pt, controller.pt, es_state.pkl, collect.json, eval.json, done);
every step resumes. The run's agent after the last round is rounds/R's M and C (see RunDir.agent_round), or
with `iterate.choose best` the round's whose C scored most in the real env (rounds/chosen.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldmodels.agent import load_controller, members, save_controller
from worldmodels.config import Config, round_config, with_overrides
from worldmodels.data.storage import episode_path, list_episodes
from worldmodels.evaluate import evaluate_real
from worldmodels.parallel import run_tasks
from worldmodels.rundir import RunDir, remove_stale_temporaries
from worldmodels.train.controller import train_controller
from worldmodels.train.mdnrnn import train_mdnrnn
from worldmodels.train.vae import encode_latents
from worldmodels.utils import (
    STREAM_ROUND_EVAL,
    Metrics,
    Stopwatch,
    atomic_write_bytes,
    atomic_write_text,
    read_header,
    seed_for,
)
from worldmodels.workers import RecordEpisodesTask, VMWeights, record_episodes, split_into_tasks


def round_episodes(cfg: Config, r: int) -> range:
    """Episode indices collected in round r (1-based), after the random-policy episodes."""
    first = cfg.collect.episodes + (r - 1) * cfg.iterate.episodes
    return range(first, first + cfg.iterate.episodes)


def collect_round(
    run_dir: Path, cfg: Config, r: int, mdnrnn: Path, params: np.ndarray, progress: bool
) -> dict[str, float]:
    """Round r's real episodes, played by C (`params`) with `mdnrnn` and the run's V."""
    return record_agent_episodes(run_dir, cfg, round_episodes(cfg, r), mdnrnn, params, progress,
                                 f"round {r}: collect with C")  # fmt: skip


def record_agent_episodes(
    run_dir: Path,
    cfg: Config,
    indices: range | list[int],
    mdnrnn: Path,
    params: np.ndarray,
    progress: bool = True,
    desc: str = "record with C",
) -> dict[str, float]:
    """Real episodes `indices` played by C (`params`) with `mdnrnn` and the run's V, handing over to the
    random policy at `iterate.explore`, written to RUN_DIR/episodes as episode files of those indices (each
    index fixes its episode's seed); the ones already there are kept (resumable). Returns the episodes,
    steps and mean return of what it played."""
    folder = RunDir(run_dir).episodes
    remove_stale_temporaries(folder)
    have = {p.name for p in list_episodes(folder)}
    todo = [i for i in indices if episode_path(folder, i).name not in have]
    tasks = [RecordEpisodesTask(params, cfg.iterate.explore, cfg.seed, tuple(todo[p]))
             for p in split_into_tasks(len(todo), cfg)]  # fmt: skip
    weights = VMWeights.of_run(run_dir, cfg, mdnrnn) if tasks else None
    clock, steps, returns = Stopwatch(), 0, []
    n = len(indices)
    with tqdm(total=n, initial=n - len(todo), desc=desc, unit="ep",
              disable=not progress, dynamic_ncols=True) as bar:  # fmt: skip
        for task, results in run_tasks(record_episodes, tasks, cfg.parallel, weights):
            for index, result in zip(task.indices, results, strict=True):
                atomic_write_bytes(episode_path(folder, index), result["data"])
                steps += result["steps"]
                returns.append(result["return"])
            bar.update(len(results))
            bar.set_postfix(mean_return=f"{np.mean(returns):.1f}", steps_s=f"{steps / clock():.0f}")
    return (
        {"episodes": len(todo), "steps": steps, "mean_return": float(np.mean(returns))}
        if tasks
        else {}
    )


def iterate(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, float]:
    """Run the rounds of iterative training that are not done yet."""
    run_dir = Path(run_dir)
    run, it = RunDir(run_dir), cfg.iterate
    if not iterate_done(run_dir, cfg):
        # The run's agent is about to change: what was measured or drawn of the old one goes.
        for path in (run.evaluation(), run.evaluation("controller", "dream"), run.real_gif,
                     run.dream_gif, run.report):  # fmt: skip
            path.unlink(missing_ok=True)
    metrics = Metrics(run_dir, "iterate", cfg.tensorboard)
    out: dict[str, float] = {}
    for r in range(1, it.rounds + 1):
        this, prev = run.round(r), run.round(r - 1)  # round 0: the first M and C
        if this.is_done():
            continue
        this.records.mkdir(parents=True, exist_ok=True)
        clock = Stopwatch()
        prev_params = load_controller(prev.controller, cfg)
        stats = collect_round(run_dir, cfg, r, prev.mdnrnn, prev_params, progress)
        if stats:  # what the previous C scored while collecting (with exploration): for the record
            atomic_write_text(this.collect_record, json.dumps({**stats, "wall_s": clock()}) + "\n")
        encode_latents(run_dir, cfg, progress)
        m_cfg = with_overrides(
            cfg, {"mdnrnn.max_updates": it.mdnrnn_updates, "mdnrnn.epochs": 1000}
        )
        train_mdnrnn(run_dir, m_cfg, progress, r)
        last = r == it.rounds  # the last round's C is the run's agent, trained in its own dream
        c_settings: dict[str, int] = {
            "controller.generations": it.generations or cfg.controller.generations
        }
        if last and it.final_generations:
            c_settings["controller.generations"] = it.final_generations
        if last and it.final_trials:
            c_settings["controller.trials"] = it.final_trials
        c_cfg = with_overrides(round_config(cfg, r), c_settings)
        x0 = members(prev_params, cfg)[0] if it.warm_start else None  # a committee: its first
        searches = it.final_searches if last and it.final_searches > 1 else it.searches
        if searches > 1:
            choose_search(run_dir, cfg, c_cfg, r, x0, progress, searches)
        else:
            train_controller(run_dir, c_cfg, progress, r, x0)
        row: dict[str, float] = {"iterate/round": r}
        if stats:
            row["iterate/collect_return"] = stats["mean_return"]
        if it.eval_episodes:
            row["iterate/eval_return"] = evaluate_round(run_dir, cfg, r, progress)["mean"]
        metrics.log(r, **row)
        atomic_write_text(this.done_marker, f"round {r} of {it.rounds}\n")
        out = row
    metrics.close()
    if it.choose == "best" and run.chosen_round(cfg) is None:
        choose_round(run_dir, cfg, progress)
    return out


def choose_search(
    run_dir: Path,
    cfg: Config,
    c_cfg: Config,
    r: int,
    x0: np.ndarray | None,
    progress: bool,
    searches: int,
) -> int:
    """`iterate.searches` (or in the last round `iterate.final_searches`): round r's C searched `searches`
    times (search j with the run's seed + j, in rounds/r/searches/j), each scored over the round's real
    episodes (the same for all: paired); the best (the earlier of a tie) becomes the round's C and its
    score the round's eval.json. With `iterate.final_vote` K > 1 in the last round, the round's C is
    instead the committee of the K best-checked searches, checked on the same episodes for eval.json.
    rounds/r/searches.json says which, with every search's score. Each step resumes."""
    this = RunDir(run_dir).round(r)
    if this.controller.exists() and this.searches.exists():
        return int(json.loads(this.searches.read_text())["search"])
    means = {}
    for j in range(searches):
        search = with_overrides(c_cfg, {"seed": cfg.seed + j})
        train_controller(run_dir, search, progress, r, x0, search=j)
        means[j] = evaluate_round(run_dir, cfg, r, progress, search=j)["mean"]
    ranked = sorted(means, key=lambda j: (-means[j], j))
    best = ranked[0]
    record: dict[str, Any] = {"search": best, "searches": len(means),
                              "episodes": cfg.iterate.eval_episodes}  # fmt: skip
    vote = cfg.iterate.final_vote if r == cfg.iterate.rounds else 1
    if vote > 1:
        # the agent: a committee of the best-checked searches, checked on the same episodes
        committee = sorted(ranked[:vote])
        header = read_header(this.searching(best).controller, "controller")
        params = np.stack([load_controller(this.searching(j).controller, cfg) for j in committee])
        this.eval.unlink(missing_ok=True)
        save_controller(this.controller, params, {**header, "committee": committee})
        record["committee"] = committee
        record["committee_return"] = evaluate_round(run_dir, cfg, r, progress)["mean"]
    else:
        chosen = this.searching(best)
        atomic_write_bytes(this.eval, chosen.eval.read_bytes())
        atomic_write_bytes(this.controller, chosen.controller.read_bytes())
    record["mean_return"] = {str(j): m for j, m in means.items()}
    atomic_write_text(this.searches, json.dumps(record, indent=2) + "\n")
    return best


def evaluate_round(
    run_dir: Path, cfg: Config, r: int, progress: bool, search: int | None = None
) -> dict:
    """Round r's C (round 0: the first C) with its M over `iterate.eval_episodes` real episodes, on seeds
    derived from the run's seed for that round alone, never those of an `evaluate --seed`, so that a
    choice made with them leaves the run's evaluation unbiased. Kept in rounds/R/eval.json (a search's
    C, `search`: on the same seeds, in rounds/R/searches/J/eval.json)."""
    this = RunDir(run_dir).round(r)
    this = this if search is None else this.searching(search)
    path = this.eval
    seed, n = seed_for(cfg.seed, STREAM_ROUND_EVAL, r), cfg.iterate.eval_episodes
    if path.exists():
        old = json.loads(path.read_text())
        if (old["seed"], old["episodes"]) == (seed, n):
            return old
        # made on other seeds (before the rounds had a stream of their own): kept aside, played again
        path.rename(this.records / f"eval_{old['seed']}_{old['episodes']}.json")
    params = load_controller(this.controller, cfg)
    result = evaluate_real(run_dir, cfg, params, n, seed, progress, mdnrnn=this.mdnrnn)
    this.records.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return result


def choose_round(run_dir: Path, cfg: Config, progress: bool) -> int:
    """`iterate.choose best`: the round whose C scored most over its real episodes (the later one of a tie)
    becomes the run's agent; rounds/chosen.json says which, with every round's score."""
    means = {
        r: evaluate_round(run_dir, cfg, r, progress)["mean"] for r in range(cfg.iterate.rounds + 1)
    }
    best = max(means, key=lambda r: (means[r], r))
    record = {"round": best, "rounds": cfg.iterate.rounds, "episodes": cfg.iterate.eval_episodes,
              "mean_return": {str(r): m for r, m in means.items()}}  # fmt: skip
    atomic_write_text(RunDir(run_dir).chosen, json.dumps(record, indent=2) + "\n")
    return best


def iterate_done(run_dir: Path, cfg: Config) -> bool:
    if cfg.iterate.rounds == 0:
        return True
    run = RunDir(run_dir)
    last_done = run.round(cfg.iterate.rounds).is_done()
    return last_done and (cfg.iterate.choose == "last" or run.chosen_round(cfg) is not None)
