"""How CarRacing agents drive, in the real env and in their own dream: mean |steer|, gas and brake, the share
of steps with the car on grass, the reward a step and the road ahead; and whether V sees the car leave the road.

    python -m experiments.drive_stats --run-dirs runs/carracing-cpu runs/cr-levers/seed7 \
        --episodes 8 --rollouts 32 --v-episodes runs/carracing-cpu/episodes/ep_0009*.npz

"Road ahead off the car's line": where the road lies to the side of the car's column, in pixels, in the
rows farthest ahead (a bend coming: 15 px or more is a sharp one) and just before the car (how far the car is
off the road's line as it goes through), from the same frames and pictures.
"On grass": more than half of a patch around the car (rows 49-57, columns 27-36 of the 64x64 frame; rows
43-50 where the run's env.frame is `full`; the car's own red pixels left out) is grass green; in the dream
the patch is read from V's picture of the dream's z every 5th step. Real episodes on env seeds 5000, 5001,
...; dream rollouts on seeds 0, 1, ... at the agent's temperature. `--v-episodes`: every 5th frame of these episode files and of V's reconstruction of them
(from the first run's V), the car-on-grass share of each and how often V's picture agrees; for a run whose
env.frame is `full`, also how white the speed bar and how blue the ABS bars are in both (their correlations:
whether z holds the speed). `--v-only`: only that, with V alone from a run that has trained nothing after V.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

import worldmodels as wm
from experiments._common import parser, play_dream, play_real
from worldmodels.config import load_config
from worldmodels.data.storage import load_episode
from worldmodels.models.checkpoints import load_vae
from worldmodels.rundir import RunDir

PATCHES = {"paper": (slice(49, 58), slice(27, 37)), "full": (slice(43, 51), slice(27, 37))}
"""Rows and columns of the 64x64 frame around the car (its place on the screen is fixed), per env.frame: the
same rows of the screen, which `full` resizes by 2/3 and the paper's 84-row crop by 64/84."""


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dirs", type=Path, nargs="+", required=True,
                    help="CarRacing runs or exported agents.")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=8, help="Real episodes an agent.")
    ap.add_argument("--rollouts", type=int, default=32, help="Dream rollouts an agent.")
    ap.add_argument(
        "--v-episodes",
        type=Path,
        nargs="*",
        default=[],
        help="Episode files whose frames V reconstructs (the first run's V).",
    )
    ap.add_argument("--v-only", action="store_true",
                    help="Only --v-episodes, with V read alone from the first run directory (a run that "
                         "has trained V and nothing after it will do).")  # fmt: skip
    return ap


def grass_share(frames: np.ndarray, frame: str = "paper") -> np.ndarray:
    """(..., 64, 64, 3) uint8 -> the share of grass-green pixels in the patch around the car, (...)."""
    rows, cols = PATCHES[frame]
    p = frames[..., rows, cols, :].astype(np.int16)
    r, g = p[..., 0], p[..., 1]
    car = (r > 150) & (g < 100)
    green = (g > r + 40) & ~car
    return green.sum((-2, -1)) / np.maximum((~car).sum((-2, -1)), 1)


ROAD_ROWS = {
    "far": {"paper": slice(0, 10), "full": slice(0, 8)},
    "near": {"paper": slice(30, 46), "full": slice(26, 40)},
}
"""Rows of the 64x64 frame ahead of the car (the camera turns with it: ahead is up), per env.frame: the
farthest, and the stretch just before the car."""
CAR_COLUMN = 32.0
"""The car's column in the 64x64 frame (the middle of PATCHES' columns)."""


def road_offset(frames: np.ndarray, frame: str = "paper", where: str = "far") -> np.ndarray:
    """(..., 64, 64, 3) uint8 -> how far the road ahead (ROAD_ROWS[where]) lies to the side of the car, in
    pixels (the mean column of its grey pixels there, less the car's column), (...); NaN where those rows
    show no road. Far ahead, a straight road reads about 0 and a sharp bend 15 or more."""
    p = frames[..., ROAD_ROWS[where][frame], :, :].astype(np.int16)
    r, g, b = p[..., 0], p[..., 1], p[..., 2]
    grey = (abs(r - g) < 20) & (abs(g - b) < 20) & (g > 70) & (g < 140)
    cols = np.arange(p.shape[-2], dtype=np.float32)
    n = grey.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_col = (grey * cols).sum((-2, -1)) / n
    return np.where(n > 0, mean_col - CAR_COLUMN, np.nan)


SPEED_BAR = (slice(57, 64), slice(8, 10))
"""Rows and columns of a `full` 64x64 frame around the indicator bar's speed bar (white, taller when faster)."""


ABS_BARS = (slice(57, 64), slice(10, 18))
"""Rows and columns of a `full` 64x64 frame around the four ABS bars (blue, one per wheel's spin)."""


def speed_reading(frames: np.ndarray) -> np.ndarray:
    """(..., 64, 64, 3) uint8 `full` frames -> how white the speed bar's corner is, (...): 0 standing."""
    return frames[..., SPEED_BAR[0], SPEED_BAR[1], :].min(-1).mean((-2, -1)) / 255


def abs_reading(frames: np.ndarray) -> np.ndarray:
    """(..., 64, 64, 3) uint8 `full` frames -> how much blue the ABS bars show, (...)."""
    p = frames[..., ABS_BARS[0], ABS_BARS[1], :].astype(np.float32)
    return np.clip(p[..., 2] - p[..., 0], 0, None).mean((-2, -1)) / 255


def summary(actions: np.ndarray, grass: np.ndarray, rewards: np.ndarray, offset: np.ndarray) -> str:
    """offset: (n, 2), the road's offset far ahead and just before the car."""
    seen = np.abs(offset[:, 0][~np.isnan(offset[:, 0])])
    near = np.abs(offset[:, 1][~np.isnan(offset[:, 1])])
    return (f"|steer| {np.abs(actions[:, 0]).mean():.3f}, gas {actions[:, 1].mean():.3f}, "
            f"brake {actions[:, 2].mean():.3f}, on grass {np.mean(grass > 0.5):.3f}, "
            f"reward a step {rewards.mean():.3f}, road ahead off the car's line {seen.mean():.1f} px "
            f"(15 px or more {np.mean(seen >= 15):.3f}; no road ahead {np.mean(np.isnan(offset[:, 0])):.3f}), "
            f"just before the car {near.mean():.1f} px")  # fmt: skip


def real_play(agent: wm.WorldModel, n: int) -> str:
    """n real episodes played as one batch."""
    frame = agent.config.env.frame
    actions, grass, offset = [], [], []

    def look(i: int, row: int, obs: np.ndarray, a: Any, env: Any) -> None:
        actions.append(np.asarray(a, np.float32))
        grass.append(grass_share(obs, frame))
        offset.append([road_offset(obs, frame, w) for w in ("far", "near")])

    rewards = play_real(agent, n, look)
    return summary(np.stack(actions), np.array(grass), np.array(rewards), np.array(offset))


def dream_play(agent: wm.WorldModel, n: int) -> str:
    """n dream rollouts of the agent's C at its temperature, stepped as one batch."""
    frame = agent.config.env.frame
    actions, grass, offset = [], [], []

    def look(t: int, x: np.ndarray, out: np.ndarray, dream: Any) -> None:
        actions.append(agent.action_vector(out))
        if t % 5 == 0:
            pictures = agent.vision.decode(dream.slots.z.cpu().numpy())
            grass.append(grass_share(pictures, frame))
            offset.append(np.stack([road_offset(pictures, frame, w) for w in ("far", "near")], -1))

    rewards = play_dream(agent, n, look)
    return summary(np.concatenate(actions), np.concatenate(grass), np.concatenate(rewards),
                   np.concatenate(offset))  # fmt: skip


def v_agreement(vision: wm.Vision, frame: str, files: list[Path]) -> str:
    real, pictured = [], []
    for f in files:
        frames = load_episode(f, ("obs",))["obs"][::5]
        real.append(frames)
        pictured.append(vision.decode(vision.encode(frames)))
    real, pictured = np.concatenate(real), np.concatenate(pictured)
    a, b = grass_share(real, frame), grass_share(pictured, frame)
    on, seen = a > 0.5, b > 0.5
    out = (f"V, {len(a)} frames of {len(files)} episodes: car on grass {on.mean():.3f} of them; V's picture "
           f"shows grass on {seen[on].mean():.3f} of those and on {seen[~on].mean():.3f} of the others; "
           f"grass shares correlate {np.corrcoef(a, b)[0, 1]:.3f}")  # fmt: skip
    if frame == "full":
        for name, read in (
            ("the speed bar's whiteness", speed_reading),
            ("the ABS bars' blue", abs_reading),
        ):
            s, t = read(real), read(pictured)
            out += (f"; {name} {s.mean():.3f} (V's picture {t.mean():.3f}), correlating "
                    f"{np.corrcoef(s, t)[0, 1]:.3f}")  # fmt: skip
    return out


def vision_of(run_dir: Path) -> tuple[wm.Vision, str]:
    """V alone from a run directory whose V is trained, and the run's env.frame."""
    cfg = load_config(run_dir / "config.json")
    vae = load_vae(RunDir(run_dir).vae, cfg)
    return wm.Vision(vae, cfg.vae.amp, torch.device("cpu")), cfg.env.frame


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.v_only:
        print(v_agreement(*vision_of(args.run_dirs[0]), args.v_episodes))
        return
    for d in args.run_dirs:
        agent = wm.load(d)
        print(f"{d} real ({args.episodes} episodes): {real_play(agent, args.episodes)}", flush=True)
        print(
            f"{d} dream ({args.rollouts} rollouts): {dream_play(agent, args.rollouts)}", flush=True
        )
    if args.v_episodes:
        agent = wm.load(args.run_dirs[0])
        print(v_agreement(agent.vision, agent.config.env.frame, args.v_episodes))


if __name__ == "__main__":
    main()
