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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmodels.agent import Agent, Models, load_models, model_paths
from worldmodels.config import Config, from_dict
from worldmodels.data.starts import dream_starts
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
    out: dict[str, Any] = {"return": float(np.sum(rewards)), "length": len(rewards)}
    if record:
        out.update(
            action=np.stack(actions).astype(np.float32),
            reward=np.asarray(rewards, np.float32),
            terminated=np.asarray(terms, bool),
            truncated=np.asarray(truncs, bool),
        )
        if keep_frame is None:
            out["obs"] = np.stack(frames)
    return out


@lru_cache(maxsize=2)
def worker_env(env_id: str, max_steps: int) -> gym.Env:
    """One env per worker process, made on its first task and reused (reset reseeds it)."""
    return adapter_for(env_id).make(max_steps)


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
        as_numpy = lambda m: {k: v.numpy() for k, v in m.state_dict().items()}  # noqa: E731
        return cls(cfg.to_dict(), as_numpy(models.vae), as_numpy(models.mdnrnn),
                   models.mdnrnn.action_dim)  # fmt: skip

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
    """Real episodes for one worker task: C's parameters (None: the random policy) and the env seeds."""

    params: Any  # np.ndarray (P,) or None for the random policy
    seeds: tuple[int, ...]

    def __repr__(self) -> str:
        who = "random policy" if self.params is None else "controller"
        return f"{who} on {len(self.seeds)} episode(s) from seed {self.seeds[0]}"


def play_real(task: RealEpisodes, weights: AgentWeights) -> list[tuple[float, int]]:
    """(return, length) of each episode; runs inside a worker."""
    if task.params is None:
        cfg = weights.config_object()
        adapter = adapter_for(cfg.env.id)
        act = adapter.random_policy(cfg.collect)
        start = lambda s: act.reset(rng_for(s, 2))  # noqa: E731
    else:
        models = weights.models()
        cfg, adapter = models.cfg, models.adapter
        act = Agent(models, task.params)
        start = act.reset
    env = worker_env(cfg.env.id, cfg.env.max_steps)
    out = []
    for s in task.seeds:
        start(s)
        ep = play_episode(env, adapter, act, s, record=False)
        out.append((ep["return"], ep["length"]))
    return out


def play_real_batch(
    tasks: Iterable[RealEpisodes], weights: AgentWeights, cfg: Config
) -> Iterator[tuple[RealEpisodes, list[tuple[float, int]]]]:
    """Every task on the configured workers, yielded as it finishes."""
    return run_tasks(play_real, list(tasks), cfg.parallel, shared=weights)


class RealFitness:
    """Rollouts of candidates in the real env, one worker task per candidate."""

    def __init__(self, run_dir: Path, cfg: Config, mdnrnn: Path | None = None) -> None:
        self.cfg = cfg
        self.weights = AgentWeights.of_run(run_dir, cfg, mdnrnn)

    def rollout(self, params: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as Dream.rollout: row i of params with seeds[i]; rows sharing params are batched."""
        groups: dict[bytes, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault(np.asarray(p, np.float32).tobytes(), []).append(i)
        tasks = [
            RealEpisodes(params[rows[0]], tuple(seeds[i] for i in rows)) for rows in groups.values()
        ]
        index = {id(t): rows for t, rows in zip(tasks, groups.values(), strict=True)}
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), int)
        for task, res in play_real_batch(tasks, self.weights, self.cfg):
            for i, (r, n) in zip(index[id(task)], res, strict=True):
                returns[i], lengths[i] = r, n
        return returns, lengths


@dataclass(frozen=True)
class AgentEpisodeTask:
    """One real episode played by C (with exploration), recorded like a random-policy episode."""

    params: Any  # np.ndarray (P,)
    explore: float
    seed: int
    index: int

    def __repr__(self) -> str:
        return f"controller episode {self.index}"


def record_agent_episode(task: AgentEpisodeTask, weights: AgentWeights) -> dict[str, Any]:
    """Play and record episode `index` with C (iterative training's data); returns the file's bytes."""
    models = weights.models()
    agent = Agent(models, task.params, task.explore)
    env_seed = seed_for(task.seed, STREAM_ITERATE, task.index)
    agent.reset(env_seed)
    env = worker_env(models.cfg.env.id, models.cfg.env.max_steps)
    ep = play_episode(env, models.adapter, agent, env_seed)
    arrays = {k: ep[k] for k in EPISODE_KEYS}
    return {"data": encode_npz(arrays), "steps": ep["length"], "return": ep["return"]}


# ------------------------------------------------------------------------------------------ the dream


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
    m_path = Path(mdnrnn) if mdnrnn else model_paths(Path(run_dir), cfg)[0]
    return Dream(load_mdnrnn(m_path, cfg, device), adapter, mu, logvar, spec, device)
