"""PPO (stable-baselines3) trained only inside a shipped agent's dream, then scored in the real game beside
the agent's own CMA-ES controller: in the same dream, and over the same real episodes.

    pip install 'worldmodels-torch[doom,rl]'
    python examples/ppo_in_the_dream.py --agent doom --timesteps 200000 --episodes 100 --seeds 1234 7

PPO sees what C sees (C's input [z, (c), h] from the agent's V and M) and acts through the same mapping
(its outputs in [-1, 1]); in the real game V and M run as the shipped agent runs them, and PPO's deterministic
action replaces C's. Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import worldmodels as wm
from worldmodels.dream import DreamSlots
from worldmodels.episodes import eval_seeds


def sb3_dream(agent: wm.WorldModel, n: int, seed: int, temperature: float | None):
    """The agent's dream as stable-baselines3's VecEnv: `n` dreams stepped as one batch, an ended one
    restarted at once (sb3's convention; its last observation in info["terminal_observation"])."""
    from stable_baselines3.common.vec_env import VecEnv

    single = agent.dream(temperature)
    dream = single.dream
    rng = np.random.default_rng(seed)

    class DreamVecEnv(VecEnv):
        def __init__(self) -> None:
            super().__init__(n, single.observation_space, single.action_space)
            self.slots = DreamSlots(dream, n)

        def reset(self):
            self.slots.restart(list(range(n)), rng.integers(2**31, size=n).tolist())
            return self.slots.features().numpy()

        def step_async(self, actions):
            self.actions = np.asarray(actions, np.float32).reshape(n, -1)

        def step_wait(self):
            reward, done = self.slots.step(torch.from_numpy(np.clip(self.actions, -1, 1)))
            obs = self.slots.features().numpy()
            truncated = self.slots.steps >= dream.spec.max_steps
            ended = done | truncated
            infos = [{} for _ in range(n)]
            restart = np.nonzero(ended)[0].tolist()
            for i in restart:
                infos[i] = {"terminal_observation": obs[i].copy(),
                            "TimeLimit.truncated": bool(truncated[i] and not done[i])}  # fmt: skip
            if restart:
                self.slots.restart(restart, rng.integers(2**31, size=len(restart)).tolist())
                obs = self.slots.features().numpy()
            return obs, reward, ended, infos

        def close(self) -> None:
            pass

        def get_attr(self, attr_name, indices=None):
            return [getattr(single, attr_name)] * n

        def set_attr(self, attr_name, value, indices=None) -> None:
            pass

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [None] * n

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * n

    return DreamVecEnv()


def dream_score(agent: wm.WorldModel, act, rollouts: int, seed: int) -> dict:
    """Mean return of `rollouts` dream rollouts (each env's first episode), the policy `act(obs)`."""
    env = agent.dream_vector(rollouts)
    obs, _ = env.reset(seed=[seed + i for i in range(rollouts)])
    total, alive = np.zeros(rollouts), np.ones(rollouts, bool)
    while alive.any():
        obs, r, terminated, truncated, _ = env.step(act(obs))
        total[alive] += r[alive]
        alive &= ~(terminated | truncated)
    return {"mean": float(total.mean()), "std": float(total.std()), "rollouts": rollouts}


def real_score(agent: wm.WorldModel, controller, seeds: list[int], batch: int = 16) -> dict:
    """Real episodes on the given env seeds, `batch` envs at a time; `controller` None plays C. On one
    torch thread, as `worldmodels evaluate`'s workers play them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    returns = {}
    envs = [agent.make_env() for _ in range(batch)]
    for start in range(0, len(seeds), batch):
        wave = seeds[start : start + batch]
        policy = agent.policy(controller)
        policy.reset(wave)
        obs = [envs[i].reset(seed=s)[0] for i, s in enumerate(wave)]
        total, alive = np.zeros(len(wave)), list(range(len(wave)))
        while alive:
            actions = policy.act(np.stack([obs[i] for i in alive]), envs=alive)
            still = []
            for i, a in zip(alive, actions, strict=True):
                obs[i], r, terminated, truncated, _ = envs[i].step(a)
                total[i] += r
                if not (terminated or truncated):
                    still.append(i)
            alive = still
        returns.update(zip(wave, total.tolist(), strict=True))
    for env in envs:
        env.close()
    torch.set_num_threads(threads)
    r = np.array([returns[s] for s in seeds])
    return {"mean": float(r.mean()), "std": float(r.std()), "stderr": float(r.std(ddof=1) / np.sqrt(len(r))),
            "episodes": len(r), "returns": r.tolist()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument(
        "--agent", default="doom", help="Shipped agent, exported folder or run directory."
    )
    p.add_argument("--timesteps", type=int, default=200_000, help="PPO's steps in the dream.")
    p.add_argument("--envs", type=int, default=16, help="Dreams PPO steps at once.")
    p.add_argument(
        "--temperature", type=float, default=None, help="Dream tau (default: the agent's)."
    )
    p.add_argument("--seed", type=int, default=0, help="PPO's and the dream's seed.")
    p.add_argument(
        "--dream-rollouts", type=int, default=256, help="Dream rollouts that score each policy."
    )
    p.add_argument("--episodes", type=int, default=100, help="Real episodes per evaluation seed.")
    p.add_argument("--seeds", type=int, nargs="+", default=[1234, 7],
                   help="Evaluation seeds (episode seeds as `worldmodels evaluate --seed S`).")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="Also write the JSON result here.")
    args = p.parse_args()
    from stable_baselines3 import PPO

    torch.manual_seed(args.seed)
    agent = wm.load(args.agent)
    t0 = time.perf_counter()
    venv = sb3_dream(agent, args.envs, args.seed, args.temperature)
    ppo = PPO(
        "MlpPolicy", venv, seed=args.seed, n_steps=256, batch_size=256, verbose=0, device="cpu"
    )
    ppo.learn(total_timesteps=args.timesteps)
    train_s = time.perf_counter() - t0

    def ppo_act(x: np.ndarray) -> np.ndarray:
        return np.asarray(ppo.predict(x, deterministic=True)[0], np.float32).reshape(len(x), -1)

    seeds = [s for seed in args.seeds for s in eval_seeds(seed, args.episodes)]
    out = {"agent": args.agent, "timesteps": args.timesteps, "train_s": round(train_s, 1),
           "temperature": args.temperature or agent.temperature, "eval_seeds": args.seeds,
           "dream": {"ppo": dream_score(agent, ppo_act, args.dream_rollouts, 10_000),
                     "cmaes": dream_score(agent, agent.controller.act, args.dream_rollouts, 10_000)}}  # fmt: skip
    t1 = time.perf_counter()
    out["real"] = {
        "ppo": real_score(agent, ppo_act, seeds),
        "cmaes": real_score(agent, None, seeds),
    }
    out["eval_s"] = round(time.perf_counter() - t1, 1)
    text = json.dumps(out)
    for who in ("ppo", "cmaes"):
        d, r = out["dream"][who], out["real"][who]
        print(f"{who:6s} dream {d['mean']:.1f} +- {d['std']:.1f}   real {r['mean']:.1f} +- {r['std']:.1f} "
              f"(s.e. {r['stderr']:.1f}, {r['episodes']} episodes)")  # fmt: skip
    print(
        f"PPO trained {train_s:.0f} s for {args.timesteps} dream steps; evaluation {out['eval_s']:.0f} s"
    )
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
