"""Real-env work on workers (local processes or Ray tasks): what a worker is sent (V's and M's weights,
once per worker), the tasks (episodes to score, or to record for iterative training), and real-env fitness
for CMA-ES. Workers need no shared file system: everything comes with the task or the weights.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.agent import AgentModels, BatchedAgent, load_models
from worldmodels.config import Config, from_dict
from worldmodels.data.storage import EPISODE_KEYS, encode_npz
from worldmodels.envs import adapter_for, adapter_of
from worldmodels.episodes import play_batch, play_episode, worker_env, worker_envs
from worldmodels.parallel import run_tasks
from worldmodels.utils import (
    STREAM_ITERATE,
    rng_for,
    seed_for,
)

# ---------------------------------------------------------------------------- what a worker is sent


@dataclass(frozen=True)
class VMWeights:
    """A run's config, and V's and M's weights (None for the random policy): everything a worker needs
    besides C's parameters, which each task carries."""

    config: dict[str, Any]
    vae: dict[str, np.ndarray] | None
    mdnrnn: dict[str, np.ndarray] | None
    action_dim: int = 0
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Identifies these weights in a worker's cache."""

    @classmethod
    def of_run(cls, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> VMWeights:
        """The run's V and M (its agent's M, RunDir.agent, unless `mdnrnn` names one), checked as they load."""
        models = load_models(run_dir, cfg, mdnrnn=mdnrnn)
        return cls.of_models(cfg, models.vae, models.mdnrnn)

    @classmethod
    def untrained(cls, cfg: Config, seed: int = 0) -> VMWeights:
        """V and M of the config's sizes, freshly initialised (benchmarks and tests of the agent)."""
        from worldmodels.models import ConvVAE, build_mdnrnn

        torch.manual_seed(seed)
        vae = ConvVAE(cfg.vae.z_dim)
        return cls.of_models(cfg, vae, build_mdnrnn(cfg, adapter_for(cfg.env.id).action_dim))

    @classmethod
    def of_models(cls, cfg: Config, vae: torch.nn.Module, mdnrnn: Any) -> VMWeights:
        as_numpy = lambda m: {k: v.numpy() for k, v in m.state_dict().items()}  # noqa: E731
        return cls(cfg.to_dict(), as_numpy(vae), as_numpy(mdnrnn), mdnrnn.action_dim)

    @classmethod
    def random_policy(cls, cfg: Config) -> VMWeights:
        return cls(cfg.to_dict(), None, None)

    def config_object(self) -> Config:
        return from_dict(self.config)

    def models(self) -> AgentModels:
        """V and M built from the weights, once per worker process (see _worker_models)."""
        return _worker_models(self)


_built: dict[str, AgentModels] = {}
"""A worker process's models, by VMWeights.key (at most two: the newest ones)."""


def _worker_models(w: VMWeights) -> AgentModels:
    from worldmodels.models import MDNRNN, ConvVAE, build_mdnrnn

    if w.key not in _built:
        cfg = w.config_object()  # (a worker's thread count is set by parallel.py, not here)

        def load(model: ConvVAE | MDNRNN, state: dict[str, np.ndarray]) -> Any:
            model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
            return model.eval()

        assert w.vae is not None and w.mdnrnn is not None
        models = AgentModels(cfg, load(ConvVAE(cfg.vae.z_dim), w.vae),
                        load(build_mdnrnn(cfg, w.action_dim), w.mdnrnn), adapter_of(cfg))  # fmt: skip
        while len(_built) >= 2:
            _built.pop(next(iter(_built)))
        _built[w.key] = models
    return _built[w.key]


# ------------------------------------------------------------------------------------ the real env


@dataclass(frozen=True)
class EpisodesTask:
    """Real episodes for one worker task: C's parameters (P,), or one row per seed (n, P), or None for the
    random policy; and the env seeds."""

    params: Any
    seeds: tuple[int, ...]

    def __repr__(self) -> str:
        who = "random policy" if self.params is None else "controller"
        return f"{who} on {len(self.seeds)} episode(s) from seed {self.seeds[0]}"

    def jobs(self) -> list[tuple[int, np.ndarray]]:
        rows = np.asarray(self.params, np.float32)
        rows = np.broadcast_to(rows, (len(self.seeds), rows.shape[-1])) if rows.ndim == 1 else rows
        return list(zip(self.seeds, rows, strict=True))


def play_task(task: EpisodesTask, weights: VMWeights) -> list[tuple[float, int]]:
    """(return, length) of each episode; runs inside a worker. C plays the task's episodes
    `parallel.envs` at a time (the batched agent); the random policy plays them one after another."""
    cfg = weights.config_object()
    if task.params is None:
        adapter = adapter_for(cfg.env.id)
        policy = adapter.random_policy(cfg.collect)
        env = worker_env(cfg.env)
        out = []
        for s in task.seeds:
            policy.reset(rng_for(s, 2))
            ep = play_episode(env, adapter, policy, s, record=False)
            out.append((ep["return"], ep["length"]))
        return out
    models = weights.models()
    slots = min(cfg.parallel.envs, len(task.seeds))
    envs = worker_envs(cfg.env, slots)
    eps = play_batch(envs, models.adapter, BatchedAgent(models, slots), task.jobs())
    return [(ep["return"], ep["length"]) for ep in eps]


def split_into_tasks(n: int, cfg: Config) -> list[slice]:
    """How n episodes of the batched agent are split into worker tasks: every worker gets work, a task
    holds at most 4 x parallel.envs episodes (a retried task does not redo too much)."""
    size = max(1, min(4 * cfg.parallel.envs, -(-n // cfg.parallel.workers)))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def play_tasks(
    tasks: Iterable[EpisodesTask], weights: VMWeights, cfg: Config
) -> Iterator[tuple[EpisodesTask, list[tuple[float, int]]]]:
    """Every task on the configured workers, yielded as it finishes."""
    return run_tasks(play_task, list(tasks), cfg.parallel, shared=weights)


class RealFitness:
    """Rollouts of candidates in the real env: each worker task plays a share of all the generation's
    rollouts, `parallel.envs` at a time, whatever candidate they belong to."""

    def __init__(self, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> None:
        self.cfg = cfg
        self.weights = VMWeights.of_run(run_dir, cfg, mdnrnn)

    def rollout(self, params: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as Dream.rollout: row i of params with seeds[i]."""
        params = np.asarray(params, np.float32)
        parts = split_into_tasks(len(seeds), self.cfg)
        tasks = [EpisodesTask(params[p], tuple(seeds[p])) for p in parts]
        index = {id(t): p for t, p in zip(tasks, parts, strict=True)}
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), int)
        for task, res in play_tasks(tasks, self.weights, self.cfg):
            returns[index[id(task)]] = [r for r, _ in res]
            lengths[index[id(task)]] = [n for _, n in res]
        return returns, lengths


@dataclass(frozen=True)
class RecordEpisodesTask:
    """Real episodes played by C (with exploration) at once, recorded like random-policy episodes."""

    params: Any  # np.ndarray (P,)
    explore: float
    seed: int
    indices: tuple[int, ...]

    def __repr__(self) -> str:
        return f"controller episodes {self.indices[0]}..{self.indices[-1]}"


def record_episodes(task: RecordEpisodesTask, weights: VMWeights) -> list[dict[str, Any]]:
    """Play and record episodes `indices` with C (iterative training's data); returns each file's bytes."""
    models = weights.models()
    cfg = models.cfg
    jobs = [(seed_for(task.seed, STREAM_ITERATE, i), task.params) for i in task.indices]
    slots = min(cfg.parallel.envs, len(jobs))
    envs = worker_envs(cfg.env, slots)
    agent = BatchedAgent(models, slots, task.explore)
    eps = play_batch(envs, models.adapter, agent, jobs, record=True)
    return [
        {"data": encode_npz({k: ep[k] for k in EPISODE_KEYS}), "steps": ep["length"],
         "return": ep["return"]}
        for ep in eps
    ]  # fmt: skip
