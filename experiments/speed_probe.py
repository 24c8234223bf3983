"""Does M know how fast the car goes, in the real env and in its own dream? A linear probe from M's memory h
to the car's true speed, fitted on real episodes, then read in the dream.

    python -m experiments.speed_probe --agents carracing runs/c1 runs/c4 --episodes 8 --rollouts 32

Each agent (sharing one V and M: Cs trained in the same dream, e.g. `train-controller --pretrained carracing
--seed S`) plays `--episodes` real episodes (env seeds 5000, 5001, ...) while the car's true speed (the hull's
velocity, the number behind the game's speed bar) and C's input [z, h] are recorded at every step. A ridge
regression from h to the speed is fitted on the even-numbered episodes of every agent and scored (R^2) on the
odd ones; then each agent's C drives `--rollouts` rollouts of M's dream at its temperature and the probe reads
the speed M imagines. Printed per agent: the mean and the 90th percentile of the speed, true and as the probe
reads it, real against imagined, and the share of steps above the fastest decile of all real speeds (true,
and by the probe, whose ridge pulls the extremes in: set the dream's probe reading beside the real one's). If M's memory
holds the speed (R^2 near 1) and imagines the fast Cs as fast as they really go, M knows the speed and only
not what it does in a bend; if it imagines them slower, speed is what the dream gets wrong.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

import worldmodels as wm
from experiments._common import parser, play_dream, play_real
from worldmodels.errors import WorldModelsError
from worldmodels.utils import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--agents", nargs="+", required=True,
                    help="CarRacing agents (run directories, exported folders or a pretrained name) that "
                         "share one V and M.")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=8, help="Real episodes an agent.")
    ap.add_argument("--rollouts", type=int, default=32, help="Dream rollouts an agent.")
    ap.add_argument("--ridge", type=float, default=1.0, help="The probe's ridge penalty.")
    ap.add_argument("--out", type=Path, help="Write the table as JSON here.")
    return ap


def speed_of(env) -> float:
    """The car's true speed in CarRacing (the hull's linear velocity, as the speed bar reads it)."""
    v = env.unwrapped.car.hull.linearVelocity
    return float(np.hypot(v[0], v[1]))


def real_play(agent: wm.WorldModel, n: int) -> list[dict[str, np.ndarray]]:
    """n real episodes as one batch: per episode, C's inputs (T, in), actions (T, 3), true speeds (T,)."""
    eps: list[dict[str, list]] = [{"x": [], "a": [], "speed": []} for _ in range(n)]
    seen: list[np.ndarray] = []

    def controller(x: np.ndarray) -> np.ndarray:
        seen[:] = [x.copy()]  # C's inputs of this step, one row per episode still playing
        return agent.controller.act(x)

    def look(i: int, row: int, obs: np.ndarray, a: Any, env: Any) -> None:
        eps[i]["x"].append(seen[0][row])
        eps[i]["a"].append(np.asarray(a, np.float32))
        eps[i]["speed"].append(speed_of(env))

    play_real(agent, n, look, controller)
    return [{k: np.asarray(v, np.float32) for k, v in e.items()} for e in eps]


def dream_play(agent: wm.WorldModel, n: int) -> dict[str, np.ndarray]:
    """n dream rollouts of the agent's C at its temperature: C's inputs and the env actions, (n*T, ...)."""
    xs, actions = [], []

    def look(t: int, x: np.ndarray, out: np.ndarray, dream: Any) -> None:
        xs.append(x.copy())
        actions.append(agent.action_vector(out))

    play_dream(agent, n, look)
    return {"x": np.concatenate(xs), "a": np.concatenate(actions)}


class Probe:
    """Ridge regression speed ~ h (with an intercept), h standardised on the fitting data."""

    def __init__(self, h: np.ndarray, speed: np.ndarray, ridge: float) -> None:
        self.mu, self.sd = h.mean(0), h.std(0) + 1e-6
        X = (h - self.mu) / self.sd
        self.b0 = float(speed.mean())
        A = X.T @ X + ridge * np.eye(X.shape[1])
        self.w = np.linalg.solve(A, X.T @ (speed - self.b0))

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return ((h - self.mu) / self.sd) @ self.w + self.b0


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - np.mean((pred - y) ** 2) / np.var(y))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        agents = {str(a): wm.load(a) for a in args.agents}
        first_name, first = next(iter(agents.items()))
        for name, agent in agents.items():
            if "CarRacing" not in agent.env_id:
                raise WorldModelsError(
                    f"--agents: {name} plays {agent.env_id}; the probe reads CarRacing's car"
                )
            theirs, ours = agent.memory.model.state_dict(), first.memory.model.state_dict()
            if theirs.keys() != ours.keys() or any(
                not torch.equal(theirs[k], ours[k]) for k in ours
            ):
                raise WorldModelsError(
                    f"--agents must share one M: {name}'s differs from {first_name}'s"
                )
    except WorldModelsError as e:
        raise SystemExit(f"error: {e}") from None
    h_of = lambda x: x[:, -first.memory.hidden :]  # noqa: E731  (C's input ends with h)
    real = {name: real_play(agent, args.episodes) for name, agent in agents.items()}

    def pooled(eps: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([h_of(e["x"]) for e in eps]), np.concatenate(
            [e["speed"] for e in eps]
        )

    fit_h, fit_speed = pooled([e for eps in real.values() for e in eps[0::2]])
    held_h, held_speed = pooled([e for eps in real.values() for e in eps[1::2]])
    probe = Probe(fit_h, fit_speed, args.ridge)
    fast = float(np.quantile(np.concatenate([fit_speed, held_speed]), 0.9))
    table: dict[str, Any] = {"probe_r2_held_out": r2(probe(held_h), held_speed),
                             "probe_r2_fit": r2(probe(fit_h), fit_speed),
                             "fast_speed": fast, "agents": {}}  # fmt: skip
    print(f"probe h -> speed: R^2 {table['probe_r2_fit']:.3f} (fit), {table['probe_r2_held_out']:.3f} "
          f"(held-out episodes); fastest decile of real speeds above {fast:.1f}")  # fmt: skip
    print(
        "| agent | where | speed: mean / 90th pct. | the probe's reading: mean / 90th pct. | steps above the fast decile: true / probe | gas |"
    )
    print("|---|---|---|---|---|---|")
    for name, agent in agents.items():
        x = np.concatenate([e["x"] for e in real[name]])
        true = np.concatenate([e["speed"] for e in real[name]])
        read = probe(h_of(x))
        d = dream_play(agent, args.rollouts)
        dread = probe(h_of(d["x"]))
        gas = float(np.concatenate([e["a"] for e in real[name]])[:, 1].mean())
        row = {
            "real": {"speed": float(true.mean()), "speed_p90": float(np.quantile(true, 0.9)),
                     "probe": float(read.mean()), "probe_p90": float(np.quantile(read, 0.9)),
                     "fast_share": float(np.mean(true > fast)),
                     "fast_share_probe": float(np.mean(read > fast)), "gas": gas},
            "dream": {"probe": float(dread.mean()), "probe_p90": float(np.quantile(dread, 0.9)),
                      "fast_share_probe": float(np.mean(dread > fast)),
                      "gas": float(d["a"][:, 1].mean())},
        }  # fmt: skip
        table["agents"][name] = row
        r, m = row["real"], row["dream"]
        print(
            f"| {name} | real | {r['speed']:.1f} / {r['speed_p90']:.1f} | {r['probe']:.1f} / "
            f"{r['probe_p90']:.1f} | {r['fast_share']:.3f} / {r['fast_share_probe']:.3f} | {gas:.3f} |"
        )
        print(f"| | dream | | {m['probe']:.1f} / {m['probe_p90']:.1f} | - / {m['fast_share_probe']:.3f} "
              f"| {m['gas']:.3f} |", flush=True)  # fmt: skip
    if args.out:
        atomic_write_text(args.out, json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
