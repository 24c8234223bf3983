"""Playing episodes, the one home for it: in the real env (C or the random policy, in worker processes or
Ray tasks), recorded or only scored, and in M's dream; and the seeds each uses.

Training (real-env fitness, iterative training's collection), evaluation and rendering all call this
module; none of them imports another's internals.

Real-env work runs on workers that need V and M: `AgentWeights` carries them (config and state dicts as
numpy arrays) to every worker with the task batch, through the pool's initializer locally and through Ray's
object store on a cluster, so workers need no shared file system; each worker builds the models once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmodels.agent import BatchedAgent, Models, load_models, model_paths
from worldmodels.config import Config, from_dict
from worldmodels.data.starts import any_step_starts, dream_starts
from worldmodels.data.storage import EPISODE_KEYS, encode_npz
from worldmodels.dream import Dream, DreamSpec
from worldmodels.envs import Adapter, adapter_for
from worldmodels.parallel import run_tasks
from worldmodels.utils import (
    STREAM_EVAL,
    STREAM_ITERATE,
    resolve_device,
    rng_for,
    seed_for,
)

# ------------------------------------------------------------------------------------- one episode


def play_episode(
    env: gym.Env,
    adapter: Adapter,
    act: Callable[[Any], Any],
    env_seed: int,
    record: bool = True,
    keep_frame: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run one episode with `act(obs) -> env action`.

    Returns the episode's arrays (see data/storage.py) when `record`, and always `return` and `length`.
    With `keep_frame`, each observation the agent acts on goes to it instead of into `obs`.
    """
    obs, _ = env.reset(seed=env_seed)
    frames, actions, rewards, terms, truncs = [], [], [], [], []
    while True:
        action = act(obs)
        if record:
            if keep_frame is None:
                frames.append(obs)
            else:
                keep_frame(obs)
            actions.append(adapter.encode_action(action))
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    lists = {"obs": frames if keep_frame is None else None, "action": actions, "reward": rewards,
             "terminated": terms, "truncated": truncs}  # fmt: skip
    return _episode(lists, record)


def _episode(lists: dict[str, list | None], record: bool) -> dict[str, Any]:
    """One played episode from its per-step lists: `return` and `length`, and with `record` the arrays an
    episode file holds (data/storage.py); `obs` is left out when it is None (frames went elsewhere)."""
    rewards = lists["reward"]
    out: dict[str, Any] = {"return": float(np.sum(rewards)), "length": len(rewards)}
    if record:
        out.update(
            action=np.stack(lists["action"]).astype(np.float32),
            reward=np.asarray(rewards, np.float32),
            terminated=np.asarray(lists["terminated"], bool),
            truncated=np.asarray(lists["truncated"], bool),
        )
        if lists["obs"] is not None:
            out["obs"] = np.stack(lists["obs"])
    return out


@lru_cache(maxsize=64)
def worker_env(env_id: str, max_steps: int, slot: int = 0) -> gym.Env:
    """A worker process's env number `slot`, made on first use and reused (reset reseeds it)."""
    return adapter_for(env_id).make(max_steps)


def worker_envs(env_id: str, max_steps: int, n: int) -> list[gym.Env]:
    """n envs of this worker process, for a batched agent."""
    return [worker_env(env_id, max_steps, i) for i in range(n)]


def _step(env_action: tuple[gym.Env, Any]) -> tuple:
    env, action = env_action
    return env.step(action)


@lru_cache(maxsize=1)
def _env_threads() -> ThreadPoolExecutor:
    """This process's threads for stepping envs whose step waits on another process (ViZDoom's game runs
    in its own process and the binding lets go of the GIL meanwhile): the games of a batch run at once."""
    return ThreadPoolExecutor(4, thread_name_prefix="worldmodels-env")


def play_batch(
    envs: list[gym.Env],
    adapter: Adapter,
    agent: BatchedAgent,
    jobs: list[tuple[int, np.ndarray]],
    record: bool = False,
) -> list[dict[str, Any]]:
    """Play the episodes `jobs` (seed, C's parameters) in len(envs) slots at once: C chooses every live
    slot's action in one batch, and a slot whose episode ended starts the next job, so the batch stays full.
    Each episode is exactly what `play_episode` gives for its seed alone (see agent.py). Returns
    play_episode's dicts, in job order."""
    keys = ("obs", "action", "reward", "terminated", "truncated")
    eps: list[dict[str, list]] = [{k: [] for k in keys} for _ in jobs]
    job_of: dict[int, int] = {}  # slot -> the job it plays
    obs: dict[int, Any] = {}
    todo = iter(range(len(jobs)))

    def begin(slot: int) -> None:
        j = next(todo, None)
        if j is None:
            return
        seed, params = jobs[j]
        agent.start(slot, seed, params)
        obs[slot] = envs[slot].reset(seed=seed)[0]
        job_of[slot] = j

    for slot in range(min(len(envs), len(jobs))):
        begin(slot)
    while job_of:
        alive = sorted(job_of)
        actions = agent.act(np.stack([obs[i] for i in alive]), alive)
        if record:
            for i, action in zip(alive, actions, strict=True):
                eps[job_of[i]]["obs"].append(obs[i])
                eps[job_of[i]]["action"].append(adapter.encode_action(action))
        steps = [(envs[i], a) for i, a in zip(alive, actions, strict=True)]
        results = (
            list(_env_threads().map(_step, steps))
            if adapter.threaded_steps and len(steps) > 1
            else [_step(sa) for sa in steps]
        )
        for i, (obs[i], reward, terminated, truncated, _) in zip(alive, results, strict=True):
            e = eps[job_of[i]]
            e["reward"].append(reward)
            e["terminated"].append(terminated)
            e["truncated"].append(truncated)
            if terminated or truncated:
                del job_of[i]
                begin(i)
    return [_episode(e, record) for e in eps]


def eval_seeds(seed: int, n: int) -> list[int]:
    """The fixed seed list of an evaluation: episode i always gets the same env seed."""
    return [seed_for(seed, STREAM_EVAL, i) for i in range(n)]


# ---------------------------------------------------------------------------- what a worker is sent


@dataclass(frozen=True)
class AgentWeights:
    """A run's config, and V's and M's weights (None for the random policy): everything a worker needs
    besides C's parameters, which each task carries."""

    config: dict[str, Any]
    vae: dict[str, np.ndarray] | None
    mdnrnn: dict[str, np.ndarray] | None
    action_dim: int = 0
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Identifies these weights in a worker's cache."""

    @classmethod
    def of_run(cls, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> AgentWeights:
        """The run's V and M (its final M unless `mdnrnn` names one), checked as they load."""
        models = load_models(run_dir, cfg, mdnrnn=mdnrnn)
        return cls.of_models(cfg, models.vae, models.mdnrnn)

    @classmethod
    def untrained(cls, cfg: Config, seed: int = 0) -> AgentWeights:
        """V and M of the config's sizes, freshly initialised (benchmarks and tests of the agent)."""
        from worldmodels.models import ConvVAE, build_mdnrnn

        torch.manual_seed(seed)
        vae = ConvVAE(cfg.vae.z_dim)
        return cls.of_models(cfg, vae, build_mdnrnn(cfg, adapter_for(cfg.env.id).action_dim))

    @classmethod
    def of_models(cls, cfg: Config, vae: torch.nn.Module, mdnrnn: Any) -> AgentWeights:
        as_numpy = lambda m: {k: v.numpy() for k, v in m.state_dict().items()}  # noqa: E731
        return cls(cfg.to_dict(), as_numpy(vae), as_numpy(mdnrnn), mdnrnn.action_dim)

    @classmethod
    def random_policy(cls, cfg: Config) -> AgentWeights:
        return cls(cfg.to_dict(), None, None)

    def config_object(self) -> Config:
        return from_dict(self.config)

    def models(self) -> Models:
        """V and M built from the weights, once per worker process (see _worker_models)."""
        return _worker_models(self)


_built: dict[str, Models] = {}
"""A worker process's models, by AgentWeights.key (at most two: the newest ones)."""


def _worker_models(w: AgentWeights) -> Models:
    from worldmodels.models import MDNRNN, ConvVAE, build_mdnrnn

    if w.key not in _built:
        cfg = w.config_object()  # (a worker's thread count is set by parallel.py, not here)

        def load(model: ConvVAE | MDNRNN, state: dict[str, np.ndarray]) -> Any:
            model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
            return model.eval()

        assert w.vae is not None and w.mdnrnn is not None
        models = Models(cfg, load(ConvVAE(cfg.vae.z_dim), w.vae),
                        load(build_mdnrnn(cfg, w.action_dim), w.mdnrnn), adapter_for(cfg.env.id))  # fmt: skip
        while len(_built) >= 2:
            _built.pop(next(iter(_built)))
        _built[w.key] = models
    return _built[w.key]


# ------------------------------------------------------------------------------------ the real env


@dataclass(frozen=True)
class RealEpisodes:
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


def play_real(task: RealEpisodes, weights: AgentWeights) -> list[tuple[float, int]]:
    """(return, length) of each episode; runs inside a worker. C plays the task's episodes
    `parallel.envs` at a time (the batched agent); the random policy plays them one after another."""
    cfg = weights.config_object()
    if task.params is None:
        adapter = adapter_for(cfg.env.id)
        policy = adapter.random_policy(cfg.collect)
        env = worker_env(cfg.env.id, cfg.env.max_steps)
        out = []
        for s in task.seeds:
            policy.reset(rng_for(s, 2))
            ep = play_episode(env, adapter, policy, s, record=False)
            out.append((ep["return"], ep["length"]))
        return out
    models = weights.models()
    slots = min(cfg.parallel.envs, len(task.seeds))
    envs = worker_envs(cfg.env.id, cfg.env.max_steps, slots)
    eps = play_batch(envs, models.adapter, BatchedAgent(models, slots), task.jobs())
    return [(ep["return"], ep["length"]) for ep in eps]


def tasks_of(n: int, cfg: Config) -> list[slice]:
    """How n episodes of the batched agent are split into worker tasks: every worker gets work, a task
    holds at most 4 x parallel.envs episodes (a retried task does not redo too much)."""
    size = max(1, min(4 * cfg.parallel.envs, -(-n // cfg.parallel.workers)))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def play_real_batch(
    tasks: Iterable[RealEpisodes], weights: AgentWeights, cfg: Config
) -> Iterator[tuple[RealEpisodes, list[tuple[float, int]]]]:
    """Every task on the configured workers, yielded as it finishes."""
    return run_tasks(play_real, list(tasks), cfg.parallel, shared=weights)


class RealFitness:
    """Rollouts of candidates in the real env: each worker task plays a share of all the generation's
    rollouts, `parallel.envs` at a time, whatever candidate they belong to."""

    def __init__(self, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> None:
        self.cfg = cfg
        self.weights = AgentWeights.of_run(run_dir, cfg, mdnrnn)

    def rollout(self, params: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as Dream.rollout: row i of params with seeds[i]."""
        params = np.asarray(params, np.float32)
        parts = tasks_of(len(seeds), self.cfg)
        tasks = [RealEpisodes(params[p], tuple(seeds[p])) for p in parts]
        index = {id(t): p for t, p in zip(tasks, parts, strict=True)}
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), int)
        for task, res in play_real_batch(tasks, self.weights, self.cfg):
            returns[index[id(task)]] = [r for r, _ in res]
            lengths[index[id(task)]] = [n for _, n in res]
        return returns, lengths


@dataclass(frozen=True)
class AgentEpisodesTask:
    """Real episodes played by C (with exploration) at once, recorded like random-policy episodes."""

    params: Any  # np.ndarray (P,)
    explore: float
    seed: int
    indices: tuple[int, ...]

    def __repr__(self) -> str:
        return f"controller episodes {self.indices[0]}..{self.indices[-1]}"


def record_agent_episodes(task: AgentEpisodesTask, weights: AgentWeights) -> list[dict[str, Any]]:
    """Play and record episodes `indices` with C (iterative training's data); returns each file's bytes."""
    models = weights.models()
    cfg = models.cfg
    jobs = [(seed_for(task.seed, STREAM_ITERATE, i), task.params) for i in task.indices]
    slots = min(cfg.parallel.envs, len(jobs))
    envs = worker_envs(cfg.env.id, cfg.env.max_steps, slots)
    agent = BatchedAgent(models, slots, task.explore)
    eps = play_batch(envs, models.adapter, agent, jobs, record=True)
    return [
        {"data": encode_npz({k: ep[k] for k in EPISODE_KEYS}), "steps": ep["length"],
         "return": ep["return"]}
        for ep in eps
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ the dream


def build_dream(
    run_dir: Path,
    cfg: Config,
    device: Any = None,
    for_pictures: bool = False,
    mdnrnn: Path | None = None,
    starts: str = "first",
) -> Dream:
    """M as a batched env (the run's final M unless `mdnrnn` names one). `for_pictures`: only z is
    wanted (render), so a missing reward is no error. `starts`: `first` frames of real episodes, or `any`
    step of them with M's memory there (controller.dream_starts; C's training dream)."""
    from worldmodels.train.mdnrnn import load_mdnrnn

    device = device or resolve_device(cfg.device)
    adapter = adapter_for(cfg.env.id)
    alive = (adapter.reward_is_alive_bonus or for_pictures) and not cfg.mdnrnn.reward_head
    spec = DreamSpec.of(cfg, alive_reward=alive)
    m_path = Path(mdnrnn) if mdnrnn else model_paths(Path(run_dir), cfg)[0]
    vae = None
    if spec.reproject_z:
        from worldmodels.train.vae import load_vae

        vae = load_vae(Path(run_dir) / "vae.pt", cfg, device)
    m = load_mdnrnn(m_path, cfg, device)
    if starts == "any":
        at = any_step_starts(run_dir, m, cfg.controller.dream_start_states, cfg.seed, device)
        mu, logvar, state = at.mu, at.logvar, (at.h, at.c)
    else:
        (mu, logvar), state = dream_starts(run_dir), None
    return Dream(m, adapter, mu, logvar, spec, device, vae, state)
