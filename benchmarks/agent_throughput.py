"""The real-env agent against the bare env, on the same number of worker processes: DoomTakeCover with the
shipped agent, and the fast CarRacing with an untrained agent of the paper's CarRacing sizes.

    python benchmarks/agent_throughput.py [--workers 2] [--envs 16] [--episodes 96]

Rows (steps/s over all workers): the bare env with random actions; the one-frame agent as it was before the
batched agent (fp32 V on one frame, M's full step with its mixture head, one env per worker); the batched
agent (`parallel.envs` envs per worker, refilled as episodes end; V in bf16 where the run trained it so,
M's memory only). Ratios are
taken within this one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.agent import AgentModels, load_controller  # noqa: E402
from worldmodels.config import ParallelConfig, load_config, preset, with_overrides  # noqa: E402
from worldmodels.envs import adapter_for  # noqa: E402
from worldmodels.episodes import play_episode, worker_env  # noqa: E402
from worldmodels.models import controller as C  # noqa: E402
from worldmodels.models import controller_dims, n_params  # noqa: E402
from worldmodels.models.vae import frames_to_tensor  # noqa: E402
from worldmodels.parallel import run_tasks  # noqa: E402
from worldmodels.pretrained import ROOT  # noqa: E402
from worldmodels.rundir import RunDir  # noqa: E402
from worldmodels.utils import rng_for  # noqa: E402
from worldmodels.workers import EpisodesTask, VMWeights, play_task, split_into_tasks  # noqa: E402


@dataclass(frozen=True)
class Bare:
    env_id: str
    max_steps: int
    seeds: tuple[int, ...]


def bare_episodes(task: Bare) -> int:
    """Random-policy episodes in the bare env (64x64 frames, as the agent sees them); returns the steps."""
    from worldmodels.config import CollectConfig, EnvConfig

    adapter = adapter_for(task.env_id)
    env = worker_env(EnvConfig(task.env_id, task.max_steps))
    policy = adapter.random_policy(CollectConfig())
    steps = 0
    for s in task.seeds:
        policy.reset(rng_for(s, 2))
        steps += play_episode(env, adapter, policy, s, record=False)["length"]
    return steps


class OneFrameAgent:
    """The agent before batching, kept here as the baseline: fp32 V on one frame, M.step with its head."""

    def __init__(self, models: AgentModels, params: np.ndarray) -> None:
        self.m, self.params = models, torch.as_tensor(np.asarray(params, np.float32))[None]

    def reset(self, seed: int) -> None:
        self.rng, self.state = rng_for(seed, 1), self.m.mdnrnn.initial_state(1)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> Any:
        cfg, adapter = self.m.cfg, self.m.adapter
        mu, logvar = self.m.vae.encode(frames_to_tensor(torch.from_numpy(obs[None])))
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(
            self.rng.standard_normal(mu.shape).astype(np.float32)
        )
        h, c = self.state[0][0], self.state[1][0]
        x = torch.cat([z, c, h] if cfg.controller.use_cell else [z, h], dim=-1)
        vec = adapter.controller_to_vector(
            C.act(self.params, x, adapter.controller_outputs, cfg.controller.bias)
        )
        _, self.state = self.m.mdnrnn.step(z, vec, self.state)
        return adapter.vector_to_action(vec[0].numpy())


def one_frame_episodes(task: EpisodesTask, weights: VMWeights) -> list[tuple[float, int]]:
    models = weights.models()
    agent = OneFrameAgent(models, task.params)
    env = worker_env(models.cfg.env)
    out = []
    for s in task.seeds:
        agent.reset(s)
        ep = play_episode(env, models.adapter, agent, s, record=False)
        out.append((ep["return"], ep["length"]))
    return out


def steps_per_s(
    fn, tasks: list, parallel: ParallelConfig, shared: Any = None
) -> tuple[float, list]:
    t = time.perf_counter()
    results = [r for _, r in run_tasks(fn, tasks, parallel, shared)]
    wall = time.perf_counter() - t
    steps = sum(r if isinstance(r, int) else sum(n for _, n in r) for r in results)
    return steps / wall, results


def chunks(seeds: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(seeds[i : i + size]) for i in range(0, len(seeds), size)]


def untrained_carracing(env_id: str, max_steps: int) -> tuple[VMWeights, np.ndarray]:
    cfg = with_overrides(preset("carracing"), {"env.id": env_id, "env.max_steps": max_steps})
    size = n_params(
        *controller_dims(cfg, adapter_for(env_id).controller_outputs), cfg.controller.bias
    )
    return VMWeights.untrained(cfg), np.random.default_rng(0).normal(0, 0.1, size).astype(
        np.float32
    )


def measure(name: str, weights: VMWeights, params: np.ndarray, episodes: int, workers: int,
            envs: int, one_frame_episodes_n: int) -> dict[str, Any]:  # fmt: skip
    cfg = weights.config_object()
    parallel = ParallelConfig(workers=workers)
    seeds = list(range(10_000, 10_000 + episodes))
    per = max(1, episodes // (2 * workers))
    bare, _ = steps_per_s(bare_episodes, [Bare(cfg.env.id, cfg.env.max_steps, s)
                                          for s in chunks(seeds, per)], parallel)  # fmt: skip
    few = seeds[:one_frame_episodes_n]
    one, one_res = steps_per_s(one_frame_episodes, [EpisodesTask(params, s) for s in chunks(few, 1)],
                               parallel, weights)  # fmt: skip
    batched_cfg = with_overrides(cfg, {"parallel.envs": envs, "parallel.workers": workers})
    weights = replace(weights, config=batched_cfg.to_dict())
    tasks = [EpisodesTask(params, tuple(seeds[p])) for p in split_into_tasks(episodes, batched_cfg)]
    batched, res = steps_per_s(play_task, tasks, parallel, weights)
    return {
        f"{name}_env": cfg.env.id,
        f"{name}_bare_env_steps_per_s": round(bare),
        f"{name}_one_frame_agent_steps_per_s": round(one),
        f"{name}_batched_agent_steps_per_s": round(batched),
        f"{name}_batched_over_one_frame": round(batched / one, 2),
        f"{name}_batched_over_bare_env": round(batched / bare, 2),
        f"{name}_one_frame_over_bare_env": round(one / bare, 2),
        f"{name}_episodes": episodes,
        f"{name}_mean_length": round(float(np.mean([n for r in res for _, n in r])), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--envs", type=int, default=16, help="envs per worker for the batched agent")
    p.add_argument(
        "--episodes", type=int, default=96, help="Doom episodes per row (about an evaluation)"
    )
    p.add_argument("--carracing-episodes", type=int, default=32)
    p.add_argument("--carracing-steps", type=int, default=1000)
    args = p.parse_args()

    doom = ROOT / "doom"
    cfg = load_config(doom / "config.json")
    params = load_controller(RunDir(doom).agent(cfg)[1], cfg)
    weights = VMWeights.of_run(doom, cfg)
    result = measure("doom", weights, params, args.episodes, args.workers, args.envs,
                     max(2 * args.workers, args.episodes // 2))  # fmt: skip
    weights, params = untrained_carracing("worldmodels/CarRacing-v3", args.carracing_steps)
    result.update(measure("carracing", weights, params, args.carracing_episodes, args.workers,
                          args.envs, 2 * args.workers))  # fmt: skip
    report("agent_throughput", {"workers": args.workers, "envs_per_worker": args.envs, **result})


if __name__ == "__main__":
    # run as the module `agent_throughput`, so worker processes can unpickle its task functions
    import agent_throughput

    agent_throughput.main()
