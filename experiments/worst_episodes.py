"""An agent's worst real episodes, looked at: each as a GIF of the real frames, V's reconstruction and M's
dream started from the same first frame (C driving in both), with what M predicted along the real episode.

    python -m experiments.worst_episodes --agent carracing --seed 99 --episodes 100 --worst 4 \
        --out runs/worst-carracing

Scores the agent over `--episodes` real episodes of evaluation seed list `--seed` (as `worldmodels evaluate
--seed`), then replays the `--worst` lowest ones through the public API, one env at a time (the evaluation played 16
at once: over 1,000 CarRacing steps the last bits of a batch's sums can lead to another episode, so both
returns are kept).
Along each, M is fed the real z and actions (teacher-forced, as the agent's memory is): its predicted reward
and done probability per step go beside the real ones. Writes OUT/eval.json, OUT/worst_K_seedS.gif (real |
V's reconstruction | dream), OUT/worst_K_seedS.png (cumulative real reward, M's predicted reward along the
real episode, the dream's reward), and OUT/worst.json (per episode: real return and length, M's predicted
return along it, the dream's return and length from its first frame, the longest stretch without a new tile).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import worldmodels as wm
from experiments._common import parser
from worldmodels.dream import Dream, DreamEnv
from worldmodels.episodes import eval_seeds
from worldmodels.evaluate import evaluate_real
from worldmodels.render import gif_bytes
from worldmodels.utils import atomic_write_bytes, atomic_write_text


def replay(agent: wm.WorldModel, seed: int, max_steps: int) -> dict:
    """One real episode as `evaluate` plays it, with what V and M made of each step."""
    env, policy = agent.make_env(max_steps), agent.policy()
    obs, _ = env.reset(seed=seed)
    policy.reset(seed)
    inner = policy._agent  # the batched agent: its z and action vector of the last step
    frames, z, vec, rewards = [], [], [], []
    done = False
    while not done:
        frames.append(obs)
        action = policy.act(obs)
        z.append(inner.last_z[0].numpy())
        vec.append(inner.last_vec[0].numpy())
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        done = terminated or truncated
    env.close()
    z, vec = np.stack(z), np.stack(vec)
    state, pred_r, pred_done = agent.memory.initial_state(1), [], []
    for t in range(len(z)):  # M fed the real z and actions: its prediction for step t
        p, state = agent.memory.step(z[t][None], vec[t][None], state)
        pred_r.append(float(p.reward[0]) if p.reward is not None else np.nan)
        pred_done.append(float(p.done[0]) if p.done is not None else np.nan)
    return {"frames": np.stack(frames), "z": z, "rewards": np.array(rewards),
            "pred_reward": np.array(pred_r), "pred_done": np.array(pred_done)}  # fmt: skip


def dream_from(agent: wm.WorldModel, frame: np.ndarray, seed: int, steps: int) -> dict:
    """M's dream started at this real frame (V's posterior of it), C driving, for at most `steps`."""
    base = agent._dream_at(None, steps)
    mu, logvar = agent.vision.encode_distribution(frame[None])
    dream = Dream(base.m, base.adapter, mu, logvar, base.spec, base.device, base.vae)
    env = DreamEnv(dream, agent._models.vae, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames, rewards, done = [env.render()], [], False
    while not done:
        obs, r, terminated, truncated, _ = env.step(agent.controller.act(obs))
        frames.append(env.render())
        rewards.append(r)
        done = terminated or truncated
    return {"frames": np.stack(frames), "rewards": np.array(rewards)}


def longest_stall(rewards: np.ndarray) -> tuple[int, int]:
    """The longest run of steps that reached no new tile (CarRacing pays -0.1 a frame and about +3.5 a new
    tile: a step without a tile is negative), and the step it began: the car off the track, spinning or
    stopped. (0, -1) when there is none."""
    best, start, run = 0, -1, 0
    for t, r in enumerate(rewards):
        run = run + 1 if r < 0 else 0
        if run > best:
            best, start = run, t - run + 1
    return best, start


def plot(path: Path, real: dict, dream: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(np.cumsum(real["rewards"]), label="real reward")
    ax.plot(np.cumsum(real["pred_reward"]), label="M's predicted reward (real z, real actions)")
    ax.plot(np.cumsum(dream["rewards"]), label="the dream from the same first frame")
    ax.set_xlabel("step")
    ax.set_ylabel("cumulative reward")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument(
        "--agent", default="carracing", help="Shipped agent, exported folder or run dir."
    )
    ap.add_argument("--seed", type=int, default=99, help="Evaluation seed list (a tuning seed).")
    ap.add_argument("--episodes", type=int, default=100, help="Real episodes to choose from.")
    ap.add_argument("--worst", type=int, default=4, help="How many of the lowest to replay.")
    ap.add_argument("--out", type=Path, required=True, help="Folder for the GIFs, plots and JSON.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    agent = wm.load(args.agent)
    cfg = agent.config
    scored_path = args.out / "eval.json"
    if scored_path.exists():
        scored = json.loads(scored_path.read_text())
    else:
        scored = evaluate_real(agent.folder, cfg, agent.controller.params, args.episodes, args.seed)
        atomic_write_text(scored_path, json.dumps(scored, indent=2) + "\n")
    seeds = eval_seeds(args.seed, args.episodes)
    order = np.argsort(scored["returns"])[: args.worst]
    torch.set_num_threads(1)  # as each evaluation worker runs
    rows = []
    for k, i in enumerate(order):
        seed = seeds[i]
        real = replay(agent, seed, cfg.env.max_steps)
        dream = dream_from(agent, real["frames"][0], seed, len(real["rewards"]))
        recon = agent.vision.decode(real["z"])
        n = len(real["frames"])
        dream_frames = np.zeros_like(real["frames"])
        m = min(n, len(dream["frames"]))
        dream_frames[:m] = dream["frames"][:m]
        panels = np.concatenate([real["frames"], recon, dream_frames], axis=2)
        name = f"worst_{k + 1}_seed{seed}"
        atomic_write_bytes(args.out / f"{name}.gif", gif_bytes(list(panels[::2]), scale=2, fps=25))
        stall, stall_at = longest_stall(real["rewards"])
        title = (f"#{k + 1} worst, seed {seed}: real {real['rewards'].sum():.1f} in {n} steps; "
                 f"M along it {np.nansum(real['pred_reward']):.1f}; dream {dream['rewards'].sum():.1f}")  # fmt: skip
        plot(args.out / f"{name}.png", real, dream, title)
        rows.append({
            "rank": k + 1, "seed": seed, "episode": int(i), "evaluated_return": scored["returns"][i],
            "real_return": float(real["rewards"].sum()),
            "length": n, "m_predicted_return": float(np.nansum(real["pred_reward"])),
            "m_max_done_p": float(np.nanmax(real["pred_done"])) if n else None,
            "dream_return": float(dream["rewards"].sum()), "dream_length": len(dream["rewards"]),
            "longest_stall": stall, "stall_starts": stall_at,
        })  # fmt: skip
        print(json.dumps(rows[-1]))
    summary = {"agent": args.agent, "seed": args.seed, "episodes": args.episodes,
               "mean": scored["mean"], "std": scored["std"], "worst": rows}  # fmt: skip
    atomic_write_text(args.out / "worst.json", json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
