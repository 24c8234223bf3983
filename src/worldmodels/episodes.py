"""Playing real-env episodes: one env with any policy (`play_episode`), or a batch of envs with the batched
agent (`play_batch`), each episode the same either way; the envs a worker process keeps; the seeds of an
evaluation. Data collection, the workers' tasks, evaluation and rendering all play through here."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from worldmodels.envs import Adapter, adapter_for
from worldmodels.utils import STREAM_EVAL, seed_for

if TYPE_CHECKING:
    from worldmodels.agent import BatchedAgent
    from worldmodels.config import EnvConfig


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
def worker_env(env: EnvConfig, slot: int = 0) -> gym.Env:
    """A worker process's env number `slot`, made on first use and reused (reset reseeds it)."""
    return adapter_for(env.id).make(env.max_steps, env.frame)


def worker_envs(env: EnvConfig, n: int) -> list[gym.Env]:
    """n envs of this worker process, for a batched agent."""
    return [worker_env(env, i) for i in range(n)]


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
        if record:  # the action as M reads it: the env's action vector, or C's own output
            m_input = agent.m.cfg.mdnrnn.action_input == "controller"
            read = agent.last_vec.numpy() if m_input else None
            for k, (i, action) in enumerate(zip(alive, actions, strict=True)):
                eps[job_of[i]]["obs"].append(obs[i])
                eps[job_of[i]]["action"].append(
                    read[k].copy() if read is not None else adapter.encode_action(action)
                )
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
