"""What `worldmodels play` shows, without the web: one person's session with an agent's V, M and C.

Two places to be: the dream (M's sampled z decoded by V, M's done head ends it, M's reward head or the
survival time scores it) and the real env (its frame beside V's reconstruction). In either, a person drives
with the keys of `Adapter.controls` or hands over to C. The "V only" panel decodes any z.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.agent import AgentModels, BatchedAgent, load_controller, load_models
from worldmodels.config import agent_temperature, load_config
from worldmodels.data.starts import dream_starts
from worldmodels.dream import Dream, DreamEnv, DreamSpec
from worldmodels.errors import WorldModelsError
from worldmodels.models import controller as linear
from worldmodels.rundir import RunDir
from worldmodels.utils import read_header

WHERE = ("dream", "real")
DRIVERS = ("you", "agent")


@dataclass
class Source:
    """An agent to play with: its models, C's parameters (None without a trained C), the dream's starts."""

    name: str
    models: AgentModels
    params: np.ndarray | None
    starts: tuple[np.ndarray, np.ndarray]
    temperature: float | None = None
    """The dream temperature the agent's C trained at (round_config; None: the config's last C's)."""

    @classmethod
    def of_run(cls, run_dir: Path, name: str | None = None) -> Source:
        """A run directory the pipeline made (its final M and C), or a shipped or exported agent's folder."""
        run_dir = Path(run_dir)
        if not RunDir(run_dir).config.exists():
            raise WorldModelsError(f"--run-dir {run_dir}: no config.json; not a run directory")
        cfg = load_config(RunDir(run_dir).config)
        if not RunDir(run_dir).vae.exists():
            raise WorldModelsError(f"--run-dir {run_dir}: no vae.pt; train V and M first")
        agent = RunDir(run_dir).agent_round(cfg)  # its M and C, and the tau its C trained at
        m_path, c_path = agent.mdnrnn, agent.controller
        if not m_path.exists():
            raise WorldModelsError(f"--run-dir {run_dir}: no {m_path.name}; train M first")
        models = load_models(run_dir, cfg, mdnrnn=m_path)
        params = None
        if c_path.exists() and read_header(c_path, "controller").get("finished"):
            params = load_controller(c_path, cfg)
        tau = agent_temperature(cfg, agent.index)
        return cls(name or str(run_dir), models, params, dream_starts(run_dir), tau)


def frame_b64(img: np.ndarray) -> str:
    """A (64, 64, 3) uint8 frame as base64 of its raw RGB bytes (the page draws it on a canvas)."""
    return base64.b64encode(np.ascontiguousarray(img, np.uint8).tobytes()).decode("ascii")


class PlaySession:
    """One page's state. `reset` starts an episode (dream or real); `step(held)` advances it one frame with
    the keys held (or C's action); `decode(z)` is the V-only panel."""

    def __init__(self, source: Source, seed: int = 0) -> None:
        self.src, self.cfg = source, source.models.cfg
        tau = source.temperature
        self.temperature = agent_temperature(self.cfg) if tau is None else tau
        m = source.models
        self.adapter, self.vae, self.controls = m.adapter, m.vae, m.adapter.controls()
        self.reward_head = m.mdnrnn.reward_head
        alive = not self.reward_head  # without a reward head the dream counts the steps survived
        # the dream C trained in (how done is read included), at the agent's tau, scored without penalty
        spec = replace(DreamSpec.of(self.cfg, alive, self.temperature, self.cfg.env.max_steps),
                       disagreement_penalty=0.0)  # fmt: skip
        self.dream = Dream(m.mdnrnn, m.adapter, *source.starts, spec, vae=m.vae)
        self.dream_env = DreamEnv(self.dream, m.vae)
        self.agent = BatchedAgent(m, 1)
        self.real_env: Any = None
        self.seed, self.where, self.driver = seed, "dream", "you"
        self.reset()

    # ------------------------------------------------------------------------------------------ state
    def info(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.reward_head:
            reward = "reward predicted by M's reward head"
        elif self.adapter.reward_is_alive_bonus:
            reward = "time survived (+1 a frame, as the real game scores)"
        else:
            reward = "frames so far (M has no reward head)"
        return {
            "name": self.src.name,
            "env": cfg.env.id,
            "game": self.adapter.name,
            "z_dim": cfg.vae.z_dim,
            "controls": [{"key": k.key, "label": k.label} for k in self.controls.keys],
            "has_controller": self.src.params is not None,
            "reward": reward,
            "done_head": self.dream.m.done_head,
            "temperature": self.temperature,
            "max_steps": cfg.env.max_steps,
        }

    def reset(self, where: str | None = None, driver: str | None = None, seed: int | None = None,
              temperature: float | None = None) -> dict[str, Any]:  # fmt: skip
        if where is not None:
            if where not in WHERE:
                raise WorldModelsError(f"where must be one of {', '.join(WHERE)}, not {where!r}")
            self.where = where
        if driver is not None:
            self.set_driver(driver)
        if temperature is not None:
            self.set_temperature(temperature)
        self.seed = self.seed + 1 if seed is None else int(seed)
        self.t, self.total, self.done, self.ended_by = 0, 0.0, False, ""
        if self.where == "dream":
            self.dream_env.reset(seed=self.seed)
            self.z = self.dream_env.z
        else:
            if self.real_env is None:
                self.real_env = self.adapter.make(self.cfg.env.max_steps, self.cfg.env.frame)
            self.obs, _ = self.real_env.reset(seed=self.seed)
            params = self.src.params if self.src.params is not None else self._zeros()
            self.agent.start(0, self.seed, params)
        return self._view(self._frame_now(), None, None, 0.0, None)

    def set_driver(self, driver: str) -> None:
        if driver not in DRIVERS:
            raise WorldModelsError(f"driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
        if driver == "agent" and self.src.params is None:
            raise WorldModelsError(f"{self.src.name} has no trained C; only you can drive")
        self.driver = driver

    def set_temperature(self, tau: float) -> None:
        tau = float(tau)
        if not 0.01 <= tau <= 5.0:
            raise WorldModelsError(f"temperature {tau} is outside [0.01, 5]")
        self.dream.spec.temperature = tau

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.agent.params.shape[1], np.float32)

    # ------------------------------------------------------------------------------------------- steps
    @torch.no_grad()
    def step(self, held: list[str] | None = None, driver: str | None = None,
             temperature: float | None = None) -> dict[str, Any]:  # fmt: skip
        """One frame with the keys `held` (ignored when C drives)."""
        if driver is not None:
            self.set_driver(driver)
        if temperature is not None:
            self.set_temperature(temperature)
        if self.done:
            return self._view(self._frame_now(), None, None, 0.0, None)
        mine = None
        if self.driver == "you":
            mine = torch.from_numpy(self.controls.outputs(set(held or [])))[None]
        if self.where == "dream":
            return self._dream_step(mine)
        return self._real_step(mine)

    def _dream_step(self, mine: torch.Tensor | None) -> dict[str, Any]:
        env = self.dream_env
        if mine is None:
            x = torch.from_numpy(env.observation())[None]
            params = torch.from_numpy(self.src.params)[None]
            mine = linear.act(params, x, self.adapter.controller_outputs, self.cfg.controller.bias)
        vec = self.adapter.controller_to_vector(mine)
        _, reward, terminated, truncated, _ = env.step(mine[0].numpy())
        self.z = env.z
        p = self.dream.last_p_done
        self._advance(reward, terminated, truncated, "M's done head")
        return self._view(
            self._frame_now(), None, vec[0], reward, None if p is None else float(p[0])
        )

    def _real_step(self, mine: torch.Tensor | None) -> dict[str, Any]:
        frame = self.obs
        action = self.agent.act(frame[None], [0], mine)[0]
        self.z = self.agent.last_z
        recon = self._decode(self.z)
        self.obs, reward, terminated, truncated, _ = self.real_env.step(action)
        self._advance(float(reward), terminated, truncated, "the game")
        return self._view(frame, recon, self.agent.last_vec[0], float(reward), None)

    def _advance(self, reward: float, terminated: bool, truncated: bool, ender: str) -> None:
        self.t += 1
        self.total += reward
        if terminated or truncated or self.t >= self.cfg.env.max_steps:
            self.done = True
            self.ended_by = ender if terminated else f"the {self.cfg.env.max_steps}-frame limit"

    # ------------------------------------------------------------------------------------------ pixels
    def _frame_now(self) -> np.ndarray:
        return self._decode(self.z) if self.where == "dream" else self.obs

    @torch.no_grad()
    def _decode(self, z: torch.Tensor) -> np.ndarray:
        img = self.vae.decode(z.float().reshape(1, -1))[0]
        return img.permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()

    def decode(self, z: list[float]) -> dict[str, Any]:
        """The V-only panel: any z (z_dim numbers) decoded to a frame."""
        v = np.asarray(z, np.float32).reshape(-1)
        if v.size != self.cfg.vae.z_dim or not np.isfinite(v).all():
            raise WorldModelsError(f"z must be {self.cfg.vae.z_dim} finite numbers, got {v.size}")
        return {"frame": frame_b64(self._decode(torch.from_numpy(v)))}

    def _view(self, frame: np.ndarray, recon: np.ndarray | None, vec: torch.Tensor | None,
              reward: float, p_done: float | None) -> dict[str, Any]:  # fmt: skip
        return {
            "where": self.where,
            "driver": self.driver,
            "t": self.t,
            "frame": frame_b64(frame),
            "recon": None if recon is None else frame_b64(recon),
            "z": [round(float(x), 4) for x in self.z.reshape(-1)],
            "action": "" if vec is None else self.adapter.describe_action(vec.numpy()),
            "reward": float(reward),
            "total": float(self.total),
            "p_done": p_done,
            "done": self.done,
            "ended_by": self.ended_by,
            "temperature": self.dream.spec.temperature,
            "seed": self.seed,
        }

    def close(self) -> None:
        if self.real_env is not None:
            self.real_env.close()
            self.real_env = None
