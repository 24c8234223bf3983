"""What the experiments share: their command line (`parser`: one style, `python -m experiments.NAME`), a run
directory for a new C on an exported agent, C's timed training, the summary of a list of scores, and an
agent's real episodes and dream rollouts played as one batch with a look at every step."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from worldmodels.config import Config, load_config, save_config, with_overrides
from worldmodels.pretrained import export_agent

TRAIN_S = "train_s.txt"

RUN_FLAGS = ("--run-dir", "--run-dirs", "--agent")
"""How an experiment is given what it reads: one run directory (`--run-dir`), several (`--run-dirs`), or an
agent, a shipped one's name or a run or exported folder (`--agent`); what it writes goes to `--out`."""


def parser(doc: str | None, module: str) -> argparse.ArgumentParser:
    """The command line of experiment `module` (its __name__): `python -m experiments.NAME`, the first
    paragraph of its docstring as the description and the rest as the epilog, `--quiet` for every one."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    # run as `python -m experiments.NAME`, the module is __main__ and its spec keeps the name
    spec = sys.modules["__main__"].__spec__ if module == "__main__" else None
    module = spec.name if spec else module
    ap = argparse.ArgumentParser(
        prog=f"python -m experiments.{module.rsplit('.', 1)[-1]}", description=head, epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="No progress bars.")
    return ap


def real_episode_flags(ap: argparse.ArgumentParser, per: str) -> None:
    """The flags of an experiment that plays real episodes of an evaluation seed list: --seed, --episodes
    (`per` names what gets that many), --workers and --out (a JSON file for the table)."""
    ap.add_argument(
        "--seed", type=int, default=99, help="Evaluation seed list (99: the tuning seeds)."
    )
    ap.add_argument("--episodes", type=int, default=100, help=f"Real episodes per {per}.")
    ap.add_argument("--workers", type=int, default=2, help="Worker processes.")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the table.")


def new_c_dir(
    run_dir: Path, d: Path, overrides: dict[str, Any], first_pass: bool = False
) -> Config:
    """D holds RUN_DIR's exported agent without its C and a config with OVERRIDES (made once; the saved
    config afterwards)."""
    if not (d / "config.json").exists():
        export_agent(run_dir, d, first_pass=first_pass)
        (d / "controller.pt").unlink()
        save_config(with_overrides(load_config(d / "config.json"), overrides), d / "config.json")
    return load_config(d / "config.json")


def timed(d: Path, train: Callable[[], Any]) -> None:
    """Run `train`, adding its wall seconds to D/train_s.txt (a resumed training adds up)."""
    t0 = time.perf_counter()
    train()
    spent = train_seconds(d) or 0.0
    (d / TRAIN_S).write_text(f"{spent + time.perf_counter() - t0:.1f}\n")


def train_seconds(d: Path) -> float | None:
    return float((d / TRAIN_S).read_text()) if (d / TRAIN_S).exists() else None


REAL_SEED = 5000
"""The env seed of the first real episode `play_real` plays (then 5001, ...)."""


def play_real(
    agent: Any,
    n: int,
    each_step: Callable[[int, int, np.ndarray, Any, Any], None],
    controller: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[float]:
    """`n` real episodes of `agent` (a `worldmodels.WorldModel`; env seeds REAL_SEED, REAL_SEED + 1, ...)
    played as one batch through its policy (`controller`: another C on its V and M, as `policy` takes it).
    `each_step(episode, row, frame, action, env)` sees every step before the env takes it (`row`: the
    episode's place among those still playing, the row C's input had). Returns the steps' rewards in the
    order `each_step` saw them."""
    envs = [agent.make_env() for _ in range(n)]
    obs = [env.reset(seed=REAL_SEED + i)[0] for i, env in enumerate(envs)]
    policy = agent.policy(controller)
    policy.reset([REAL_SEED + i for i in range(n)])
    rewards: list[float] = []
    playing = list(range(n))
    while playing:
        still = []
        actions = policy.act(np.stack([obs[i] for i in playing]), playing)
        for row, (i, a) in enumerate(zip(playing, actions, strict=True)):
            each_step(i, row, obs[i], a, envs[i])
            obs[i], reward, terminated, truncated, _ = envs[i].step(a)
            rewards.append(float(reward))
            if not (terminated or truncated):
                still.append(i)
        playing = still
    return rewards


def play_dream(
    agent: Any, n: int, each_step: Callable[[int, np.ndarray, np.ndarray, Any], None]
) -> list[np.ndarray]:
    """`n` rollouts of `agent`'s C in its dream at its temperature (seeds 0, 1, ...), stepped as one batch
    for the env's step limit. `each_step(t, x, outputs, dream)` sees C's inputs (n, in) and outputs at every
    step before the dream takes it. Returns each step's rewards (n,)."""
    dream = agent.dream_vector(n)
    x, _ = dream.reset(seed=list(range(n)))
    rewards = []
    for t in range(agent.config.env.max_steps):
        out = agent.controller.act(x)
        each_step(t, x, out, dream)
        x, reward, _, _, _ = dream.step(out)
        rewards.append(reward)
    return rewards


def stats(x: Any) -> dict[str, float]:
    """Mean, population std, standard error, and 10th/50th/90th percentiles of scores."""
    x = np.asarray(x, float)
    q10, q50, q90 = np.percentile(x, [10, 50, 90])
    return {"mean": float(x.mean()), "std": float(x.std()),
            "stderr": float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan"),
            "p10": float(q10), "median": float(q50), "p90": float(q90)}  # fmt: skip
