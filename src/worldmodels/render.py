"""GIFs: a real episode beside V's reconstruction of every frame, and a dream episode decoded by V."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from worldmodels.agent import Agent, load_controller, load_models
from worldmodels.config import Config, round_config
from worldmodels.dream import DreamEnv, build_dream
from worldmodels.episodes import play_episode
from worldmodels.models.controller import act
from worldmodels.models.vae import reconstruct
from worldmodels.rundir import RunDir
from worldmodels.utils import STREAM_RENDER, atomic_write_bytes, seed_for

MAX_FRAMES = 300


def gif_bytes(frames: list[np.ndarray], scale: int = 2, fps: int = 20) -> bytes:
    frames = [f.repeat(scale, 0).repeat(scale, 1) for f in frames]
    return iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)


def render_run(
    run_dir: Path, cfg: Config, progress: bool = True, out_dir: Path | None = None
) -> dict[str, str]:
    """Write real.gif and dream.gif into out_dir (default: the run directory)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    agent_round = RunDir(run_dir).agent_round(cfg)  # its M and C, and the tau its C trained at
    models = load_models(run_dir, cfg, mdnrnn=agent_round.mdnrnn)
    params = load_controller(agent_round.controller, cfg)
    seed = seed_for(cfg.seed, STREAM_RENDER)

    agent = Agent(models, params)
    agent.reset(seed)
    env = models.adapter.make(min(cfg.env.max_steps, MAX_FRAMES), cfg.env.frame)
    ep = play_episode(env, models.adapter, agent, seed)
    env.close()
    recon = reconstruct(models.vae, ep["obs"])
    real = [np.concatenate([o, r], 1) for o, r in zip(ep["obs"], recon, strict=True)]
    atomic_write_bytes(out_dir / "real.gif", gif_bytes(real))

    dream = DreamEnv(
        build_dream(
            run_dir,
            round_config(cfg, agent_round.index),
            "cpu",
            for_pictures=True,
            mdnrnn=models.mdnrnn,  # loaded above, on the CPU: not read from disk again
        ),
        models.vae,
        render_mode="rgb_array",
    )
    obs, _ = dream.reset(seed=seed)
    frames = [dream.render()]
    x = torch.as_tensor(params)[None]
    for _ in range(MAX_FRAMES - 1):
        a = act(
            x, torch.as_tensor(obs)[None], models.adapter.controller_outputs, cfg.controller.bias
        )
        obs, _, terminated, truncated, _ = dream.step(a[0].numpy())
        frames.append(dream.render())
        if terminated or truncated:
            break
    atomic_write_bytes(out_dir / "dream.gif", gif_bytes(frames))
    return {"real": str(out_dir / "real.gif"), "dream": str(out_dir / "dream.gif")}
