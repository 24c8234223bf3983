"""Random-policy rollouts into RUN_DIR/episodes, resumable, reproducible, local or on Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from worldmodels.config import CollectConfig, Config
from worldmodels.data.storage import (
    EPISODE_KEYS,
    encode_npz,
    episode_path,
    list_episodes,
)
from worldmodels.envs import Adapter, adapter_for
from worldmodels.parallel import run_tasks
from worldmodels.utils import (
    STREAM_COLLECT,
    Metrics,
    Stopwatch,
    atomic_write_bytes,
    remove_stale_temporaries,
    rng_for,
    seed_for,
)


def rollout(
    env: gym.Env,
    adapter: Adapter,
    act: Callable[[np.ndarray], Any],
    env_seed: int,
    record: bool = True,
) -> dict[str, Any]:
    """Run one episode with `act(obs) -> env action`.

    Returns the episode's arrays (see storage.py) when `record`, and always `return` and `length`.
    """
    obs, _ = env.reset(seed=env_seed)
    frames, actions, rewards, terms, truncs = [], [], [], [], []
    while True:
        action = act(obs)
        if record:
            frames.append(obs)
            actions.append(adapter.encode_action(action))
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    out: dict[str, Any] = {"return": float(np.sum(rewards)), "length": len(rewards)}
    if record:
        out.update(
            obs=np.stack(frames),
            action=np.stack(actions).astype(np.float32),
            reward=np.asarray(rewards, np.float32),
            terminated=np.asarray(terms, bool),
            truncated=np.asarray(truncs, bool),
        )
    return out


@lru_cache(maxsize=2)
def worker_env(env_id: str, max_steps: int) -> gym.Env:
    """One env per worker process, made on its first task and reused (reset reseeds it)."""
    return adapter_for(env_id).make(max_steps)


@dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs to collect episode `index`; its seeds derive from (seed, index)."""

    env_id: str
    max_steps: int
    collect: CollectConfig
    seed: int
    index: int

    def __repr__(self) -> str:
        return f"episode {self.index} of {self.env_id}"


def collect_episode(task: EpisodeTask) -> dict[str, Any]:
    """Collect one random-policy episode; return it compressed, ready to be written by the driver."""
    adapter = adapter_for(task.env_id)
    env = worker_env(task.env_id, task.max_steps)
    policy = adapter.random_policy(task.collect)
    policy.reset(rng_for(task.seed, STREAM_COLLECT, task.index, 1))
    ep = rollout(env, adapter, policy, seed_for(task.seed, STREAM_COLLECT, task.index))
    arrays = {k: ep[k] for k in EPISODE_KEYS}
    return {"data": encode_npz(arrays), "steps": ep["length"]}


def missing_episodes(folder: Path, n: int) -> list[int]:
    have = {int(p.stem[3:]) for p in list_episodes(folder)}
    return [i for i in range(n) if i not in have]


def collect(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, float]:
    """Collect episodes 0..N-1 that are not on disk yet; finished episodes survive any kill."""
    folder = Path(run_dir) / "episodes"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    adapter_for(cfg.env.id)  # fail fast, in this process, on an unknown env or a missing package
    todo = missing_episodes(folder, cfg.collect.episodes)
    tasks = [EpisodeTask(cfg.env.id, cfg.env.max_steps, cfg.collect, cfg.seed, i) for i in todo]
    metrics = Metrics(run_dir, "collect", cfg.tensorboard)
    clock, steps = Stopwatch(), 0
    bar = tqdm(total=cfg.collect.episodes, initial=cfg.collect.episodes - len(todo),
               desc="collect", unit="ep", disable=not progress, dynamic_ncols=True)  # fmt: skip
    try:
        for task, result in run_tasks(collect_episode, tasks, cfg.parallel):
            atomic_write_bytes(episode_path(folder, task.index), result["data"])
            steps += result["steps"]
            bar.update(1)
            bar.set_postfix(steps_per_s=f"{steps / max(clock(), 1e-9):.0f}")
    finally:
        bar.close()
    summary = {
        "collect/episodes": float(len(tasks)),
        "collect/steps": float(steps),
        "perf/env_steps_per_s": steps / max(clock(), 1e-9),
    }
    if tasks:
        metrics.log(cfg.collect.episodes, **summary)
    metrics.close()
    return summary


__all__ = ["EpisodeTask", "collect", "collect_episode", "rollout"]
